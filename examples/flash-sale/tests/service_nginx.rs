//! nginx (the Debian package) in front of two `flash-sale serve` instances on a private
//! 3-master Redis Cluster, configured as `docs/deploy.md` says: a crowd with duplicate users
//! buys only through nginx (a hot item with 8 buckets and normal items), and the invariants
//! hold through nginx and through each instance; then one instance is killed and every
//! order is still readable through nginx (a `GET` is retried on the other instance), while a
//! buy is never passed to a second instance.
//!
//! No `nginx`, `redis-server` or `redis-cli` is a test failure, not a skip: CI installs them.

mod support_cluster;
mod support_sale;
mod support_service;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support_cluster::RedisCluster;
use support_sale::{check, crowd, put_buckets, services};
use support_service::{assert_order, unique, Client, Outcome, TempDir};

/// The nginx configuration of `docs/deploy.md`, with this test's ports and paths.
fn config(dir: &Path, port: u16, upstreams: &[SocketAddr]) -> String {
    let d = dir.display();
    let servers: String = upstreams
        .iter()
        .map(|a| format!("        server {a} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    format!(
        r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream flash_sale {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_connect_timeout 1s;
        proxy_read_timeout 5s;
        location ~ ^/items/[^/]+/buy$ {{
            proxy_next_upstream off;
            proxy_pass http://flash_sale;
        }}
        location / {{
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
            proxy_pass http://flash_sale;
        }}
    }}
}}
"#
    )
}

/// A running nginx (its master in the foreground, our child); stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
}

fn nginx_binary() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin"])
    {
        let p = Path::new(dir).join("nginx");
        if p.is_file() {
            return p;
        }
    }
    panic!("no nginx on PATH or in /usr/sbin: apt-get install nginx (scripts/test does)");
}

impl Nginx {
    fn start(dir: &Path, upstreams: &[SocketAddr]) -> Nginx {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, port, upstreams)).expect("write nginx.conf");
        let mut child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited: {status}\n{log}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master's own PID (our child): a fast shutdown that also ends its
        // workers; SIGKILL if it has not ended in 5 s.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with the PID of our own child, not yet reaped (so the PID
            // cannot have been reused), and a valid signal number.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_sale_through_nginx_in_front_of_two_instances_keeps_every_invariant() {
    let cluster = RedisCluster::start();
    let prefix = unique("fs-ngx");
    let dirs = [TempDir::new("nginx-a"), TempDir::new("nginx-b")];
    let mut svcs = services(&cluster, &dirs, &prefix);
    let instances = [svcs[0].addr(), svcs[1].addr()];
    let ngx_dir = TempDir::new("nginx");
    let nginx = Nginx::start(ngx_dir.path(), &instances);
    let front = nginx.addr();

    let hot = unique("hot");
    put_buckets(front, &hot, 30, 8);
    let mut stock = HashMap::from([(hot.clone(), 30)]);
    let mut items = vec![hot];
    for n in 0..2u64 {
        let item = unique(&format!("plain{n}"));
        put_buckets(front, &item, 10 + n, 1);
        stock.insert(item.clone(), 10 + n);
        items.push(item);
    }
    let attempts = crowd([front, front], &items, 120);
    check([front, front], &stock, &attempts);
    check(instances, &stock, &attempts);

    // One instance dies: a GET is passed on to the other (idempotent), so every order is
    // still readable through nginx; a buy is never passed on, so it is answered by the
    // instance nginx picked or with an error, never twice.
    svcs.remove(0).kill9();
    let mut client = Client::new(front);
    for (item, user, o) in &attempts {
        if let Outcome::Ordered(order) = o {
            assert_order(&client.order(order), order, item, user);
        }
    }
    for i in 0..6 {
        let user = format!("after-kill-{i}");
        let resp = Client::new(front).buy_once(&items[1], &user).expect("an answer");
        assert!(
            [409, 502, 503].contains(&resp.status),
            "buy of a sold-out item after an instance died: {}",
            resp.describe()
        );
    }
    drop(nginx);
}
