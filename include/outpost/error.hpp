// outpost: one error vocabulary for the whole library.
//
// Every failure that crosses outpost's public API is an outpost::Error (or one of its
// subclasses). Adapters translate SQLite::Exception and paho's mqtt::exception at their edge and
// keep the original code in code(). transient() says whether retrying the same operation later
// can succeed (a busy database, an unreachable broker) or not (a bad topic, a newer schema).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace outpost {

enum class ErrorKind {
    invalid_message,  // the message breaks a rule (topic, qos, size, UTF-8, ttl); nothing stored
    invalid_config,   // an options struct holds a value outside its documented range
    storage,          // SQLite failed (busy, I/O, full disk, corrupt file)
    schema,           // the file is not an outpost database we can use (newer schema, not SQLite)
    broker,           // the broker could not be reached or refused the connection
    outbox_full,      // the configured quota is reached; nothing stored
    lease_held,       // another dispatcher holds this database's lease
    not_found,        // a record id that does not exist (or is not in the required state)
};

// Returns a stable lower-case name for `kind` ("invalid_message", ...).
const char* to_string(ErrorKind kind) noexcept;

class Error : public std::runtime_error {
  public:
    Error(ErrorKind kind, const std::string& what, bool transient = false, int code = 0)
        : std::runtime_error(what), kind_(kind), transient_(transient), code_(code) {}

    ErrorKind kind() const noexcept { return kind_; }
    // True when the same operation may succeed later without any change by the caller.
    bool transient() const noexcept { return transient_; }
    // The underlying library's code (SQLite extended result code, paho/MQTT reason code), or 0.
    int code() const noexcept { return code_; }

  private:
    ErrorKind kind_;
    bool transient_;
    int code_;
};

class InvalidMessage : public Error {
  public:
    explicit InvalidMessage(const std::string& what) : Error(ErrorKind::invalid_message, what) {}
};

class InvalidConfig : public Error {
  public:
    explicit InvalidConfig(const std::string& what, std::string field = {})
        : Error(ErrorKind::invalid_config, what), field_(std::move(field)) {}

    // The value at fault: its path within the options struct (or the call's parameter) that
    // what() names, e.g. "servers[0]", "tls.key_file", "client_id", "max_payload_bytes",
    // "retry.max_backoff"; empty when no single field is at fault.
    const std::string& field() const noexcept { return field_; }

  private:
    std::string field_;
};

class StorageError : public Error {
  public:
    StorageError(const std::string& what, bool transient, int code)
        : Error(ErrorKind::storage, what, transient, code) {}
};

class SchemaError : public Error {
  public:
    explicit SchemaError(const std::string& what, int code = 0)
        : Error(ErrorKind::schema, what, false, code) {}
};

class BrokerError : public Error {
  public:
    BrokerError(const std::string& what, bool transient, int code = 0)
        : Error(ErrorKind::broker, what, transient, code) {}
};

class OutboxFull : public Error {
  public:
    explicit OutboxFull(const std::string& what) : Error(ErrorKind::outbox_full, what, true) {}
};

class LeaseHeld : public Error {
  public:
    explicit LeaseHeld(const std::string& what) : Error(ErrorKind::lease_held, what, true) {}
};

class NotFound : public Error {
  public:
    explicit NotFound(const std::string& what) : Error(ErrorKind::not_found, what) {}
};

}  // namespace outpost
