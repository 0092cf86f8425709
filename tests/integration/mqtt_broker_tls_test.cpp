// MqttBroker against a real mosquitto, authentication: TLS (trusted, wrong and system CA,
// insecure, unreadable files) and user name / password on MQTT 3.1.1 and 5.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include "completions.hpp"
#include "mqtt_broker_helpers.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"

namespace outpost {
namespace {

using namespace std::chrono_literals;
using Results = testing::Completions;
using testing::make_record;
using testing::Mosquitto;
using testing::MosquittoOptions;
using testing::options_for;
using testing::Subscriber;
using testing::version_name;

class MqttBrokerTls : public ::testing::Test {
  protected:
    void SetUp() override {
        pki_ = testing::make_test_pki(pki_dir_.path());
        MosquittoOptions mo;
        mo.tls_ca_file = pki_.ca_file;
        mo.tls_cert_file = pki_.server_cert;
        mo.tls_key_file = pki_.server_key;
        mosq_ = std::make_unique<Mosquitto>(mo);
    }
    testing::TempDir pki_dir_;
    testing::TestPki pki_;
    std::unique_ptr<Mosquitto> mosq_;
};

TEST_F(MqttBrokerTls, TrustedCaConnectsAndPublishes) {
    Subscriber sub(mosq_->uri(), "secure/#", 1, 5, pki_.ca_file);
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_.ca_file;
    Results results;
    MqttBroker broker(o);
    broker.connect(5s);
    ASSERT_TRUE(broker.connected());
    broker.publish(make_record(1, "secure/a", "sealed"), results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 5s));
    EXPECT_EQ(results.get(1).status, PublishResult::Status::delivered);
    ASSERT_TRUE(sub.wait_for_count(1, 5s));
    EXPECT_EQ(sub.messages()[0].payload, "sealed");
}

TEST_F(MqttBrokerTls, WrongCaIsRefusedAndNotTransient) {
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_.other_ca_file;
    MqttBroker broker(o);
    try {
        broker.connect(5s);
        FAIL() << "connected although the server certificate is not trusted";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
        const std::string what = e.what();
        EXPECT_NE(what.find("certificate verify failed"), std::string::npos) << what;
        EXPECT_NE(what.find(mosq_->uri()), std::string::npos) << what;
    }
    EXPECT_FALSE(broker.connected());
}

TEST_F(MqttBrokerTls, SystemTrustStoreDoesNotTrustATestCa) {
    MqttBroker broker(options_for(mosq_->uri()));  // verification on by default, no CA given
    try {
        broker.connect(5s);
        FAIL() << "verification is not on by default";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
    }
}

TEST_F(MqttBrokerTls, InsecureSkipsVerification) {
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_.other_ca_file;
    o.tls.insecure = true;
    MqttBroker broker(o);
    broker.connect(5s);
    EXPECT_TRUE(broker.connected());
}

TEST_F(MqttBrokerTls, UnreadableCaFileIsAConfigurationError) {
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_dir_.file("missing.crt");
    MqttBroker broker(o);
    try {
        broker.connect(5s);
        FAIL() << "connected without its CA file";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient());
        EXPECT_NE(std::string(e.what()).find("tls.ca_file"), std::string::npos) << e.what();
    }
}

class MqttBrokerPasswords : public ::testing::TestWithParam<MqttVersion> {};

TEST_P(MqttBrokerPasswords, RightPasswordIsAcceptedWrongOneRefusedForGood) {
    MosquittoOptions mo;
    mo.users = {{"alice", "s3cret"}};
    Mosquitto mosq(mo);

    MqttOptions good = options_for(mosq.uri(), GetParam());
    good.username = "alice";
    good.password = "s3cret";
    {
        // One paho client at a time: a second one in the process connects 1-2 s slower.
        MqttBroker ok(good);
        ok.connect(5s);
        EXPECT_TRUE(ok.connected());
    }

    MqttOptions bad = good;
    bad.client_id += "-bad";
    bad.password = "guess";
    MqttBroker refused(bad);
    try {
        refused.connect(5s);
        FAIL() << "a wrong password was accepted";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
        const std::string what = e.what();
        EXPECT_NE(what.find(mosq.uri()), std::string::npos) << what;
        // mosquitto 2.0 answers "not authorized" (5 / 0x87) for a wrong password.
        EXPECT_NE(what.find("not authorized"), std::string::npos) << what;
        EXPECT_NE(what.find("password"), std::string::npos) << what;
        EXPECT_GT(e.code(), 0);
    }
    EXPECT_FALSE(refused.connected());
    refused.disconnect(0ms);

    MqttOptions anonymous = options_for(mosq.uri(), GetParam());
    MqttBroker nobody(anonymous);
    try {
        nobody.connect(5s);
        FAIL() << "an anonymous client was accepted";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(Versions, MqttBrokerPasswords,
                         ::testing::Values(MqttVersion::v3_1_1, MqttVersion::v5), version_name);

}  // namespace
}  // namespace outpost
