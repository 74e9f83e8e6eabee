//! Front doors of a test's own: NGINX and HAProxy started from this
//! checkout's configuration (`nginx/platform.conf.template` rendered the way
//! `scripts/stack` renders it, with its list of variables, `haproxy/haproxy.cfg` as it is, with the
//! environment `scripts/stack`'s `front_env` gives them) on spare loopback
//! ports, in front of two edges the test started itself.
//!
//! Why not the stack's own front doors: a test that makes its edges fail
//! (or counts every request they get) must not disturb, or be disturbed
//! by, the other tests sharing the stack; and the configuration under test
//! is the checkout's, even before the stack is restarted with it.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{free_port, repo, Process};

/// A server stopped with SIGTERM, so that NGINX's master takes its workers
/// along (a SIGKILL would orphan them, holding our stdout open); SIGKILL
/// after 5 s.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Both front doors, running until dropped.
pub struct FrontDoors {
    pub nginx: String,
    pub haproxy: String,
    _nginx: Daemon,
    _haproxy: Process,
    dir: tempfile::TempDir,
}

impl FrontDoors {
    /// NGINX and HAProxy routing `/hls/` to `edges` (two `host:port`s, in
    /// the roles of the stack's edge 1 and edge 2). Everything else they
    /// route goes where the stack's front doors send it.
    pub async fn start(edges: [&str; 2]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let (http, h2c, https, bind) = (free_port(), free_port(), free_port(), free_port());
        let mut env = front_env()?;
        for (k, v) in [
            ("EDGE_1_ADDR", edges[0].to_owned()),
            ("EDGE_2_ADDR", edges[1].to_owned()),
            ("NGINX_HTTP_PORT", format!("127.0.0.1:{http}")),
            ("NGINX_H2C_PORT", format!("127.0.0.1:{h2c}")),
            ("NGINX_HTTPS_PORT", format!("127.0.0.1:{https}")),
            ("NGINX_ACCESS_LOG", d.join("nginx-access.log").display().to_string()),
            ("HAPROXY_BIND", format!("127.0.0.1:{bind}")),
            ("HAPROXY_PIDFILE", d.join("haproxy.pid").display().to_string()),
        ] {
            env.insert(k.to_owned(), v);
        }

        let template = std::fs::read_to_string(repo().join("nginx/platform.conf.template"))?;
        std::fs::write(d.join("platform.conf"), substitute(&template, &substituted_names(&env)?, &env)?)?;
        std::fs::create_dir_all(d.join("tmp"))?;
        std::fs::write(d.join("nginx.conf"), nginx_conf(d)?)?;
        let log = |name: &str| std::fs::File::create(d.join(name));
        let nginx = Daemon(
            Command::new("nginx")
                .args(["-c", &d.join("nginx.conf").display().to_string(), "-p", &d.display().to_string()])
                .stdout(Stdio::null())
                .stderr(log("nginx-stderr.log")?)
                .spawn()
                .context("nginx starts")?,
        );
        let haproxy = Process(
            Command::new("haproxy")
                .args(["-db", "-f", &repo().join("haproxy/haproxy.cfg").display().to_string()])
                .envs(&env)
                .stdout(log("haproxy.log")?)
                .stderr(log("haproxy-stderr.log")?)
                .spawn()
                .context("haproxy starts")?,
        );
        let doors = Self { nginx: format!("http://127.0.0.1:{http}"), haproxy: format!("http://127.0.0.1:{bind}"), _nginx: nginx, _haproxy: haproxy, dir };
        crate::wait_ready(&format!("{}/nginx/health", doors.nginx), Duration::from_secs(15)).await.with_context(|| doors.logs())?;
        Ok(doors)
    }

    /// The front doors' own logs, for a failure message.
    pub fn logs(&self) -> String {
        ["nginx-error.log", "nginx-stderr.log", "haproxy.log", "haproxy-stderr.log"]
            .iter()
            .map(|name| format!("== {name}\n{}", std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The front doors' environment as `scripts/stack` exports it (its
/// `front_env` function, run from the script's own text), so a variable
/// added there reaches this test too.
fn front_env() -> anyhow::Result<HashMap<String, String>> {
    let script = r#"set -euo pipefail
source scripts/lib/env.sh
eval "$(grep -E '^(LOGS=|declare -A PORT=|NGINX_TEMPLATE_VARS=)' scripts/stack)"
eval "$(sed -n '/^front_env() {/,/^}/p' scripts/stack)"
front_env
export NGINX_TEMPLATE_VARS
env -0"#;
    let out = Command::new("bash").arg("-c").arg(script).current_dir(repo()).output()?;
    if !out.status.success() {
        bail!("could not read front_env from scripts/stack: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout.split(|b| *b == 0).filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

/// The variables `scripts/stack` lets `envsubst` replace in the NGINX
/// template (its `NGINX_TEMPLATE_VARS`: NGINX's own `$variables` must stay).
fn substituted_names(env: &HashMap<String, String>) -> anyhow::Result<Vec<String>> {
    let list = env.get("NGINX_TEMPLATE_VARS").filter(|l| !l.is_empty()).context("scripts/stack defines no NGINX_TEMPLATE_VARS")?;
    Ok(list.split_whitespace().map(|v| v.trim_start_matches("${").trim_end_matches('}').to_owned()).collect())
}

/// `envsubst` with an explicit list: each `${NAME}` of `names` is replaced,
/// anything else stays; a listed name without a value is an error rather
/// than an empty string.
fn substitute(template: &str, names: &[String], env: &HashMap<String, String>) -> anyhow::Result<String> {
    let mut out = template.to_owned();
    for name in names {
        let value = env.get(name).with_context(|| format!("nginx template variable {name} is not set by scripts/stack's front_env"))?;
        out = out.replace(&format!("${{{name}}}"), value);
    }
    Ok(out)
}

/// The main configuration around the rendered template, as `scripts/stack`
/// writes it, but in the foreground and with every path in `dir`.
fn nginx_conf(dir: &Path) -> anyhow::Result<String> {
    let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?;
    let (d, user) = (dir.display(), user.trim());
    Ok(format!(
        "user {user};\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n\
    client_body_temp_path {d}/tmp/body;\n    proxy_temp_path {d}/tmp/proxy;\n    fastcgi_temp_path {d}/tmp/fastcgi;\n    uwsgi_temp_path {d}/tmp/uwsgi;\n    scgi_temp_path {d}/tmp/scgi;\n\
    include {d}/platform.conf;\n}}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_names_are_substituted_and_a_missing_one_is_named() {
        let env = HashMap::from([("EDGE_1_ADDR".to_owned(), "127.0.0.1:1".to_owned())]);
        let names = ["EDGE_1_ADDR".to_owned()];
        let out = substitute("# only the ${UPPER_CASE} ones\nserver ${EDGE_1_ADDR}; hash $uri;", &names, &env).unwrap();
        assert_eq!(out, "# only the ${UPPER_CASE} ones\nserver 127.0.0.1:1; hash $uri;");
        let err = substitute("listen ${NGINX_HTTP_PORT};", &["NGINX_HTTP_PORT".to_owned()], &env).unwrap_err().to_string();
        assert!(err.contains("NGINX_HTTP_PORT"), "{err}");
    }

    #[test]
    fn the_stack_script_lists_the_edges_among_its_template_variables() {
        let names = substituted_names(&front_env().unwrap()).unwrap();
        assert!(names.contains(&"EDGE_1_ADDR".to_owned()) && names.contains(&"NGINX_ACCESS_LOG".to_owned()), "{names:?}");
    }
}
