//! Message brokers for the pub/sub tests: NATS with JetStream, Mosquitto and RabbitMQ. Each is
//! the machine's when it answers on its usual port (unless private ones are forced), else a
//! private process on a free port, restartable for fault tests.

use std::process::Command;
use std::time::Duration;

use super::{PrivateProcess, Recipe, listening, private_forced};
use crate::free_port;

/// A NATS server with JetStream: the machine's on 127.0.0.1:4222 when it answers, else a private
/// `nats-server -js` on a free port.
pub struct Nats {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    private: Option<PrivateProcess>,
}

impl Nats {
    /// The shared server, or a private one.
    pub fn start() -> Self {
        if !private_forced() && listening(4222) {
            return Self {
                url: "nats://127.0.0.1:4222".into(),
                private: None,
            };
        }
        Self::private()
    }

    /// Always a private server (for tests that cut it).
    pub fn private() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let recipe: Recipe = Box::new(move |dir| {
            let mut cmd = Command::new("nats-server");
            cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(dir.join("js"));
            cmd
        });
        let p = PrivateProcess::spawn(recipe, dir, port, "nats-server", Duration::from_secs(15));
        Self {
            url: format!("nats://127.0.0.1:{port}"),
            private: Some(p),
        }
    }

    /// Kills a private server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.private
            .as_mut()
            .expect("only a private server can be restarted")
            .restart();
    }
}

/// An MQTT broker: the machine's Mosquitto on 127.0.0.1:1883 when it answers, else a private
/// `mosquitto` on a free port.
pub struct Mosquitto {
    /// `tcp://127.0.0.1:<port>`.
    pub url: String,
    _private: Option<PrivateProcess>,
}

impl Mosquitto {
    /// The shared broker, or a private one.
    pub fn start() -> Self {
        if !private_forced() && listening(1883) {
            return Self {
                url: "tcp://127.0.0.1:1883".into(),
                _private: None,
            };
        }
        Self::private()
    }

    /// Always a private broker (for tests that leave sessions behind or cut it).
    pub fn private() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("mosquitto.conf");
        let recipe: Recipe = Box::new(move |_| {
            let mut cmd = Command::new("mosquitto");
            cmd.arg("-c").arg(&conf);
            cmd
        });
        let p = PrivateProcess::spawn(recipe, dir, port, "mosquitto", Duration::from_secs(15));
        Self {
            url: format!("tcp://127.0.0.1:{port}"),
            _private: Some(p),
        }
    }
}

/// A RabbitMQ broker: the machine's on 127.0.0.1:5672 when it answers, else a private node
/// (its own node name, config, data and ports; no plugins) started from the installed server.
pub struct RabbitMq {
    /// `amqp://guest:guest@127.0.0.1:<port>/`.
    pub url: String,
    _private: Option<PrivateProcess>,
}

impl RabbitMq {
    /// The shared broker, or a private one.
    pub fn start() -> Self {
        if !private_forced() && listening(5672) {
            return Self {
                url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                _private: None,
            };
        }
        Self::private()
    }

    /// Always a private node (for tests that leave durable queues behind or cut it).
    pub fn private() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, dist) = (free_port(), free_port());
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(
            path("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .expect("config");
        std::fs::write(path("rabbitmq-env.conf"), "").expect("env file");
        let recipe: Recipe = Box::new(move |dir| {
            let path = |name: &str| dir.join(name);
            let mut cmd = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
            // Every setting is our own: the machine's env file and config name its shared node.
            cmd.env("HOME", dir)
                .env("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf"))
                .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
                .env(
                    "RABBITMQ_NODENAME",
                    format!("outrider-test-{port}@localhost"),
                )
                .env("RABBITMQ_DIST_PORT", dist.to_string())
                .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
                .env("RABBITMQ_LOG_BASE", path("log"))
                .env("ERL_EPMD_ADDRESS", "127.0.0.1");
            cmd
        });
        let p = PrivateProcess::spawn(
            recipe,
            dir,
            port,
            "rabbitmq-server",
            Duration::from_secs(60),
        );
        Self {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            _private: Some(p),
        }
    }
}
