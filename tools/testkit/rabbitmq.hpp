// Testkit (tests and outpost-bench): a real RabbitMQ cluster (Debian's rabbitmq-server 3.10 with
// the rabbitmq_mqtt plugin) of 1 to 3 nodes on loopback, in its own temp dir.
//
// Everything is private to one instance: its own epmd on a free 127.0.0.1 port (ERL_EPMD_PORT,
// ERL_EPMD_ADDRESS exported to every child, -start_epmd false so no node or CLI ever starts the
// system's epmd on 4369), HOME in the temp dir with a random cookie (the real HOME is never
// touched), per node a node name, a distribution port and an MQTT listener on free loopback ports,
// AMQP off (`listeners.tcp = none`), mnesia, logs, plugins file and RABBITMQ_CONF_ENV_FILE in the
// temp dir. Node 1 starts first; once it accepts, nodes 2.. start together and join it while
// they boot (classic-config peer discovery): no node has to restart its app to join, which
// stop_app / join_cluster / start_app would (with the MQTT plugin's fixed wait at each start).
// A node that exits while starting is started once more, on new ports.
//
// Every node is a child of the test process, with PR_SET_PDEATHSIG (SIGKILL) set on the process
// that becomes beam.smp (the start script execs into it), as is epmd: they die with the test even
// when it is SIGKILLed. Linux delivers that signal when the *thread* that forked exits: construct
// the cluster on a thread that lives as long as it (a test body does).
//
// Known limits, measured here (NOTES.md "Other brokers"): MQTT 3.1.1 only (an MQTT 5 CONNECT is
// answered by closing the socket, no CONNACK); restarting the killed node of a two-node cluster
// stalls ~110 s (the MQTT plugin's Raft quorum), so there is no restart(); a persistent-session
// subscription queue lives on the node the subscriber was connected to.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace outpost::testing {

class RabbitCluster {
  public:
    static constexpr const char* kScripts = "/usr/lib/rabbitmq/bin";
    static constexpr const char* kEpmd = "/usr/bin/epmd";

    // True when rabbitmq-server, rabbitmqctl and epmd are installed (tests skip otherwise).
    static bool available();

    // Starts `nodes` nodes (1 to 3) and returns once every node's MQTT listener accepts TCP and
    // every node 2.. joined node 1. Throws std::invalid_argument for another count, and
    // std::runtime_error with every node's log when a node exits or the cluster is not up within
    // `timeout` (default 180 s: two nodes take 22-35 s on an idle 2-core machine, several times
    // that beside a build).
    explicit RabbitCluster(int nodes = 1,
                           std::chrono::milliseconds timeout = std::chrono::seconds(180));
    ~RabbitCluster();  // SIGKILLs every node and epmd, then removes the temp dir
    RabbitCluster(const RabbitCluster&) = delete;
    RabbitCluster& operator=(const RabbitCluster&) = delete;

    int size() const { return static_cast<int>(nodes_.size()); }
    // "tcp://127.0.0.1:PORT": the MQTT listener of node `node` (0-based, like every index here).
    std::string uri(int node) const;
    int mqtt_port(int node) const;
    // The Erlang node name, e.g. "rabbit-2@localhost".
    std::string node_name(int node) const;
    // The node's beam.smp process (for SIGSTOP / SIGKILL); -1 once it was killed or exited.
    pid_t pid(int node) const;
    // SIGKILL, then waits for the exit: no goodbye to clients or to the other nodes.
    void kill(int node);
    // False once the node was killed or exited on its own.
    bool running(int node) const;
    // The node's console log (RabbitMQ logs to stdout here) and anything the start script printed.
    std::string log(int node) const;
    // How long the constructor took until the cluster was up.
    std::chrono::milliseconds start_time() const { return start_time_; }
    const std::filesystem::path& dir() const { return dir_.path(); }

    // Runs `rabbitmqctl -n NODE ARGS...` against node `node` (e.g. {"set_policy", ...}) and
    // returns its output. Throws std::runtime_error with the output when it fails. Takes 2-3 s
    // (an Erlang VM boots for each call).
    std::string rabbitmqctl(int node, const std::vector<std::string>& args) const;

  private:
    struct Node {
        std::string name;
        int mqtt_port = 0;
        int dist_port = 0;
        std::filesystem::path dir;
        mutable pid_t pid = -1;  // reaped (set to -1) by running() when it exited on its own
        int restarts = 0;        // after exiting at start (restart_failed_node)
    };

    const Node& at(int node) const;
    void write_node_files(int index) const;
    // The environment of every child: the parent's without RABBITMQ_*, ERL_*, HOME, LC_ALL and
    // meson's MALLOC_PERTURB_ (of no use to the broker), plus ours and `extra`.
    std::vector<std::string> environment(const std::vector<std::string>& extra) const;
    void start_node(int index);
    void restart_failed_node(int index);
    // Waits until nodes 0 .. count-1 accept MQTT connections (and 1.. joined node 0).
    void wait_until_up(int count, std::chrono::steady_clock::time_point deadline);
    std::string all_logs() const;
    void kill_all() noexcept;

    TempDir dir_;
    std::vector<Node> nodes_;
    int epmd_port_ = 0;
    pid_t epmd_pid_ = -1;
    std::chrono::milliseconds start_time_{0};
};

}  // namespace outpost::testing
