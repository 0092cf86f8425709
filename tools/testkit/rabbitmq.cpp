#include "rabbitmq.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "mosquitto.hpp"  // free_loopback_port()

extern char** environ;

namespace outpost::testing {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

bool accepts_connections(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

// fork + execve with the given environment and working directory, stdin from /dev/null,
// stdout/stderr appended to `log_file`, SIGKILL when the forking thread dies. Everything the child
// needs is built before the fork: only async-signal-safe calls happen in it (the test process has
// paho threads running).
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
            const std::string& cwd, const std::string& log_file) {
    std::vector<char*> args;
    for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : env) {
        envp.push_back(const_cast<char*>(e.c_str()));
    }
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(126);
        }
        const int in = ::open("/dev/null", O_RDONLY);
        if (in >= 0) {
            ::dup2(in, 0);
            ::close(in);
        }
        const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::close(fd);
        }
        if (::chdir(cwd.c_str()) != 0) {
            ::_exit(125);
        }
        ::execve(args[0], args.data(), envp.data());
        ::_exit(127);
    }
    return pid;
}

int wait_status(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

void kill_and_reap(pid_t& pid) noexcept {
    if (pid > 0) {
        ::kill(pid, SIGKILL);
        wait_status(pid);
        pid = -1;
    }
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

bool executable(const std::string& path) {
    return ::access(path.c_str(), X_OK) == 0;
}

std::string script(const char* name) {
    return std::string(RabbitCluster::kScripts) + "/" + name;
}

}  // namespace

bool RabbitCluster::available() {
    return executable(script("rabbitmq-server")) && executable(script("rabbitmqctl")) &&
           executable(kEpmd);
}

RabbitCluster::RabbitCluster(int nodes, std::chrono::milliseconds timeout) {
    if (nodes < 1 || nodes > 3) {
        throw std::invalid_argument("RabbitCluster: 1 to 3 nodes, not " + std::to_string(nodes));
    }
    const auto started = steady::now();
    const auto deadline = started + timeout;

    // The children's HOME: the cookie lives there, so the real HOME's cookie is neither read nor
    // created. Erlang refuses a cookie file that others can read.
    const auto home = dir_.path() / "home";
    std::filesystem::create_directory(home);
    {
        std::random_device rd;
        std::string cookie;
        for (int i = 0; i < 32; ++i) {
            cookie += static_cast<char>('A' + rd() % 26);
        }
        const std::string cookie_file = (home / ".erlang.cookie").string();
        std::ofstream(cookie_file) << cookie;
        ::chmod(cookie_file.c_str(), 0600);
    }

    epmd_port_ = free_loopback_port();
    for (int i = 0; i < nodes; ++i) {
        Node n;
        n.name = "rabbit-" + std::to_string(i + 1) + "@localhost";
        n.mqtt_port = free_loopback_port();
        n.dist_port = free_loopback_port();
        n.dir = dir_.path() / ("node-" + std::to_string(i + 1));
        std::filesystem::create_directory(n.dir);
        nodes_.push_back(std::move(n));
    }
    for (int i = 0; i < nodes; ++i) {
        write_node_files(i);
    }

    try {
        epmd_pid_ = spawn({kEpmd, "-address", "127.0.0.1", "-port", std::to_string(epmd_port_)},
                          environment({}), dir_.path().string(), dir_.file("epmd.log"));
        while (!accepts_connections(epmd_port_)) {
            int status = 0;
            if (::waitpid(epmd_pid_, &status, WNOHANG) == epmd_pid_) {
                epmd_pid_ = -1;
                throw std::runtime_error("epmd exited at start:\n" +
                                         read_file(dir_.file("epmd.log")));
            }
            if (steady::now() >= deadline) {
                throw std::runtime_error("epmd did not accept connections");
            }
            std::this_thread::sleep_for(10ms);  // polling a port: there is nothing to wait on
        }
        // The seed first, the others once it accepts: they then join a node that is up, not
        // one still loading its tables (where a joiner waits in 30 s steps).
        start_node(0);
        wait_until_up(1, deadline);
        for (int i = 1; i < nodes; ++i) {
            start_node(i);
        }
        wait_until_up(nodes, deadline);
    } catch (...) {
        kill_all();
        throw;
    }
    start_time_ = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started);
}

RabbitCluster::~RabbitCluster() {
    kill_all();
}

void RabbitCluster::kill_all() noexcept {
    for (auto& n : nodes_) {
        kill_and_reap(n.pid);
    }
    kill_and_reap(epmd_pid_);
}

const RabbitCluster::Node& RabbitCluster::at(int node) const {
    if (node < 0 || node >= size()) {
        throw std::out_of_range("RabbitCluster: no node " + std::to_string(node));
    }
    return nodes_[static_cast<std::size_t>(node)];
}

void RabbitCluster::write_node_files(int index) const {
    const Node& n = nodes_[static_cast<std::size_t>(index)];
    const std::string d = n.dir.string();
    // Read by the scripts and by the VM's prelaunch (names without the RABBITMQ_ prefix). Every
    // path into the temp dir: nothing under /var/lib/rabbitmq or /etc/rabbitmq is used.
    std::ofstream env(n.dir / "env.conf");
    env << "NODENAME=" << n.name << "\n"
        << "DIST_PORT=" << n.dist_port << "\n"
        << "CONFIG_FILE=" << d << "/rabbitmq.conf\n"
        << "ADVANCED_CONFIG_FILE=" << d << "/advanced.config\n"
        << "ENABLED_PLUGINS_FILE=" << d << "/enabled_plugins\n"
        << "PLUGINS_EXPAND_DIR=" << d << "/plugins-expand\n"
        << "MNESIA_BASE=" << d << "/mnesia\n"
        << "LOG_BASE=" << d << "/log\n"
        << "LOGS=-\n"
        << "PID_FILE=" << d << "/pid\n"
        << "FEATURE_FLAGS_FILE=" << d
        << "/feature_flags\n"
        // The distribution listens on loopback only; neither the node nor a CLI call may start
        // an epmd of its own (it would be the system one, on every interface, and outlive us).
        << "SERVER_ADDITIONAL_ERL_ARGS=\"-noinput -start_epmd false"
           " -kernel inet_dist_use_interface {127,0,0,1}\"\n"
        << "CTL_ERL_ARGS=\"-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}\"\n";
    env.close();

    // What `rabbitmq-plugins --offline enable rabbitmq_mqtt` writes, without booting a VM for it.
    std::ofstream(n.dir / "enabled_plugins") << "[rabbitmq_mqtt].\n";

    std::ofstream conf(n.dir / "rabbitmq.conf");
    conf << "listeners.tcp = none\n"  // no AMQP listener
         << "mqtt.listeners.tcp.default = 127.0.0.1:" << n.mqtt_port << "\n"
         << "mqtt.allow_anonymous = true\n"
         << "log.console = true\n"
         << "log.console.level = info\n";
    if (index > 0) {
        // Join node 1 at boot. Should node 1 not answer at once (it was up a moment ago), the
        // join is retried (0.5 s apart) for longer than any start we allow, so this node never
        // forms a cluster of its own.
        conf << "cluster_formation.peer_discovery_backend = classic_config\n"
             << "cluster_formation.classic_config.nodes.1 = " << nodes_[0].name << "\n"
             << "cluster_formation.discovery_retry_limit = 1000\n"
             << "cluster_formation.discovery_retry_interval = 500\n";
    }
    std::ofstream(n.dir / "advanced.config") << "[].\n";
}

std::vector<std::string> RabbitCluster::environment(const std::vector<std::string>& extra) const {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string var(*e);
        if (var.rfind("RABBITMQ_", 0) == 0 || var.rfind("ERL_", 0) == 0 ||
            var.rfind("HOME=", 0) == 0 || var.rfind("LC_ALL=", 0) == 0 ||
            var.rfind("MALLOC_PERTURB_=", 0) == 0) {
            continue;
        }
        env.push_back(var);
    }
    env.push_back("HOME=" + (dir_.path() / "home").string());
    env.push_back("ERL_EPMD_ADDRESS=127.0.0.1");
    env.push_back("ERL_EPMD_PORT=" + std::to_string(epmd_port_));
    env.push_back("ERL_CRASH_DUMP=" + dir_.file("erl_crash.dump"));
    env.push_back("LC_ALL=C.UTF-8");  // the Elixir CLI warns about (and mangles) other locales
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

void RabbitCluster::start_node(int index) {
    Node& n = nodes_[static_cast<std::size_t>(index)];
    // RABBITMQ_ALLOW_INPUT makes the script exec into erl (and erl into beam.smp) instead of
    // running it as a background job of a shell: the pid we hold is the VM's, and the death
    // signal set here stays on it. -noinput (in the env file) keeps the Erlang shell off.
    n.pid = spawn({script("rabbitmq-server")},
                  environment({"RABBITMQ_CONF_ENV_FILE=" + (n.dir / "env.conf").string(),
                               "RABBITMQ_ALLOW_INPUT=1"}),
                  n.dir.string(), (n.dir / "console.log").string());
}

// A node that exits while starting gets one more try, on new ports and an empty database: a
// port picked free can be taken before the node binds it (other tests, outgoing connections).
// The first try's log is kept (console-1.log) and shown if the second fails too.
void RabbitCluster::restart_failed_node(int index) {
    Node& n = nodes_[static_cast<std::size_t>(index)];
    std::filesystem::rename(n.dir / "console.log", n.dir / "console-1.log");
    std::filesystem::remove_all(n.dir / "mnesia");
    n.mqtt_port = free_loopback_port();
    n.dist_port = free_loopback_port();
    write_node_files(index);
    ++n.restarts;
    start_node(index);
}

void RabbitCluster::wait_until_up(int count, steady::time_point deadline) {
    std::vector<bool> up(static_cast<std::size_t>(count), false);
    for (;;) {
        bool all = true;
        for (std::size_t i = 0; i < up.size(); ++i) {
            if (up[i]) {
                continue;
            }
            int status = 0;
            if (::waitpid(nodes_[i].pid, &status, WNOHANG) == nodes_[i].pid) {
                nodes_[i].pid = -1;
                if (nodes_[i].restarts > 0) {
                    throw std::runtime_error("RabbitMQ node " + nodes_[i].name +
                                             " exited at start, twice:\n" + all_logs());
                }
                restart_failed_node(static_cast<int>(i));
                all = false;
                continue;
            }
            // The MQTT listener opens last, after the join: a node 2.. that accepts has either
            // joined node 1 or booted alone (which the log tells).
            if (accepts_connections(nodes_[i].mqtt_port)) {
                if (i > 0 && log(static_cast<int>(i)).find("selected for auto-clustering") ==
                                 std::string::npos) {
                    throw std::runtime_error("RabbitMQ node " + nodes_[i].name +
                                             " started without joining " + nodes_[0].name + ":\n" +
                                             all_logs());
                }
                up[i] = true;
            } else {
                all = false;
            }
        }
        if (all) {
            return;
        }
        if (steady::now() >= deadline) {
            throw std::runtime_error("RabbitMQ cluster not up in time:\n" + all_logs());
        }
        std::this_thread::sleep_for(50ms);  // polling ports: there is nothing to wait on
    }
}

std::string RabbitCluster::all_logs() const {
    std::string out;
    for (int i = 0; i < size(); ++i) {
        const Node& n = nodes_[static_cast<std::size_t>(i)];
        if (n.restarts > 0) {
            out += "===== " + n.name + ", first try =====\n" + read_file(n.dir / "console-1.log");
        }
        out += "===== " + n.name + " =====\n" + log(i) + "\n";
    }
    return out;
}

std::string RabbitCluster::uri(int node) const {
    return "tcp://127.0.0.1:" + std::to_string(at(node).mqtt_port);
}

int RabbitCluster::mqtt_port(int node) const {
    return at(node).mqtt_port;
}

std::string RabbitCluster::node_name(int node) const {
    return at(node).name;
}

pid_t RabbitCluster::pid(int node) const {
    running(node);
    return at(node).pid;
}

void RabbitCluster::kill(int node) {
    at(node);
    kill_and_reap(nodes_[static_cast<std::size_t>(node)].pid);
}

bool RabbitCluster::running(int node) const {
    const Node& n = at(node);
    int status = 0;
    if (n.pid > 0 && ::waitpid(n.pid, &status, WNOHANG) == n.pid) {
        n.pid = -1;
    }
    return n.pid > 0;
}

std::string RabbitCluster::log(int node) const {
    return read_file(at(node).dir / "console.log");
}

std::string RabbitCluster::rabbitmqctl(int node, const std::vector<std::string>& args) const {
    const Node& n = at(node);
    // The CLI's own distribution port: a free one per call, not the script's fixed default range
    // (35672-35682), which concurrent tests would share.
    const std::string ctl_port = std::to_string(free_loopback_port());
    std::vector<std::string> argv = {script("rabbitmqctl"), "-n", n.name};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string out_file = (n.dir / "rabbitmqctl.out").string();
    std::filesystem::remove(out_file);
    const pid_t pid = spawn(argv,
                            environment({"RABBITMQ_CONF_ENV_FILE=" + (n.dir / "env.conf").string(),
                                         "RABBITMQ_CTL_DIST_PORT_MIN=" + ctl_port,
                                         "RABBITMQ_CTL_DIST_PORT_MAX=" + ctl_port}),
                            n.dir.string(), out_file);
    const int status = wait_status(pid);
    std::string out = read_file(out_file);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string cmd;
        for (const auto& a : argv) {
            cmd += (cmd.empty() ? "" : " ") + a;
        }
        throw std::runtime_error("command failed: " + cmd + "\n" + out);
    }
    return out;
}

}  // namespace outpost::testing
