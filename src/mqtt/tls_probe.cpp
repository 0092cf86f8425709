// Why a TLS connect failed, asked of OpenSSL directly.
//
// paho reports a refused port and a certificate that does not verify alike ("-1 TCP/TLS connect
// failure"). paho-mqtt-cpp 1.2 can forward OpenSSL's error text through an error callback, but
// it registers the address of a by-value copy of its ssl_options as the callback's context, so
// the callback reads a dead stack object (AddressSanitizer: stack-use-after-scope). Instead,
// after a failed TLS connect, this repeats the handshake once with the same trust settings and
// reports what OpenSSL says.
#include "tls_probe.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace outpost::mqtt_detail {

namespace {

struct HostPort {
    std::string host;
    std::string port;
};

// "ssl://host:port" (any scheme, [v6]:port; the port defaults by scheme); std::nullopt for
// anything without "://".
std::optional<HostPort> split_uri(const std::string& uri) {
    const auto scheme = uri.find("://");
    if (scheme == std::string::npos) {
        return std::nullopt;
    }
    std::string rest = uri.substr(scheme + 3);
    if (const auto slash = rest.find('/'); slash != std::string::npos) {
        rest.resize(slash);
    }
    if (const auto at = rest.rfind('@'); at != std::string::npos) {
        rest.erase(0, at + 1);  // user:password@
    }
    HostPort hp;
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string::npos) {
            return std::nullopt;
        }
        hp.host = rest.substr(1, close - 1);
        if (close + 1 < rest.size() && rest[close + 1] == ':') {
            hp.port = rest.substr(close + 2);
        }
    } else {
        const auto colon = rest.rfind(':');
        hp.host = rest.substr(0, colon);
        if (colon != std::string::npos) {
            hp.port = rest.substr(colon + 1);
        }
    }
    if (hp.port.empty()) {
        const std::string scheme_name = uri.substr(0, scheme);
        hp.port = scheme_name == "tcp" || scheme_name == "mqtt" ? "1883"
                  : scheme_name == "ws"                         ? "80"
                  : scheme_name == "wss"                        ? "443"
                                                                : "8883";
    }
    return hp;
}

// A connected TCP socket, or -1.
int tcp_connect(const HostPort& hp, std::chrono::milliseconds timeout) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &found) != 0) {
        return -1;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            ::close(fd);
            continue;
        }
        pollfd p{fd, POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof err;
        if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
            // Back to blocking, bounded by timeouts, for the handshake.
            timeval tv{static_cast<time_t>(timeout.count() / 1000),
                       static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            const int fl = ::fcntl(fd, F_GETFL);
            ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            return fd;
        }
        ::close(fd);
    }
    return -1;
}

std::string openssl_errors() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) {
            out += "; ";
        }
        out += buf;
    }
    return out;
}

}  // namespace

std::string probe_tls_failure(const std::string& uri, const MqttTls& tls,
                              std::chrono::milliseconds timeout) {
    const auto hp = split_uri(uri);
    if (!hp) {
        return "";
    }
    const int fd = tcp_connect(*hp, timeout);
    if (fd < 0) {
        return "";  // not a TLS problem: the server is not reachable
    }
    ERR_clear_error();
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          &SSL_CTX_free);
    std::string problem;
    if (!ctx) {
        ::close(fd);
        return "";
    }
    if (!tls.insecure) {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
        const char* file = tls.ca_file.empty() ? nullptr : tls.ca_file.c_str();
        const char* path = tls.ca_path.empty() ? nullptr : tls.ca_path.c_str();
        const int ok = (file || path) ? SSL_CTX_load_verify_locations(ctx.get(), file, path)
                                      : SSL_CTX_set_default_verify_paths(ctx.get());
        if (ok != 1) {
            problem = "cannot load the trusted CA certificates: " + openssl_errors();
        }
    }
    if (problem.empty() && !tls.cert_file.empty()) {
        if (!tls.key_password.empty()) {
            SSL_CTX_set_default_passwd_cb_userdata(ctx.get(),
                                                   const_cast<char*>(tls.key_password.c_str()));
        }
        const std::string& key = tls.key_file.empty() ? tls.cert_file : tls.key_file;
        if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
            problem = "cannot use the client certificate or key: " + openssl_errors();
        }
    }
    if (problem.empty()) {
        std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
        SSL_set_fd(ssl.get(), fd);
        SSL_set_tlsext_host_name(ssl.get(), hp->host.c_str());
        if (!tls.insecure) {
            SSL_set1_host(ssl.get(), hp->host.c_str());
        }
        if (SSL_connect(ssl.get()) != 1) {
            problem = openssl_errors();
            const long verify = SSL_get_verify_result(ssl.get());
            if (verify != X509_V_OK) {
                problem += std::string(problem.empty() ? "" : " (") +
                           X509_verify_cert_error_string(verify) + (problem.empty() ? "" : ")");
            }
            if (problem.empty()) {
                problem = "the TLS handshake did not complete";
            }
        } else {
            SSL_shutdown(ssl.get());
        }
    }
    ::close(fd);
    return problem;
}

bool closes_mqtt5_connect(const std::string& uri, std::chrono::milliseconds timeout) {
    if (!(uri.starts_with("tcp://") || uri.starts_with("mqtt://")) ||
        timeout <= std::chrono::milliseconds(0)) {
        return false;
    }
    const auto hp = split_uri(uri);
    if (!hp) {
        return false;
    }
    const auto until = std::chrono::steady_clock::now() + timeout;
    const int fd = tcp_connect(*hp, timeout);
    if (fd < 0) {
        return false;
    }
    // CONNECT: protocol "MQTT" level 5, clean start, keepalive 60 s, no properties, empty id.
    static constexpr unsigned char kConnect[] = {0x10, 13,   0x00, 0x04, 'M',  'Q',  'T', 'T',
                                                 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x00};
    bool closed = false;
    if (::send(fd, kConnect, sizeof kConnect, MSG_NOSIGNAL) ==
        static_cast<ssize_t>(sizeof kConnect)) {
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            pollfd p{fd, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) {
                break;  // no answer in time: a slow server, not a refusal
            }
            unsigned char byte = 0;
            const ssize_t got = ::recv(fd, &byte, 1, 0);
            closed = got == 0 || (got < 0 && errno == ECONNRESET);
            if (got < 0 && errno == EINTR) {
                continue;
            }
            break;  // a byte (a CONNACK) or a closed socket
        }
    }
    ::close(fd);
    return closed;
}

}  // namespace outpost::mqtt_detail
