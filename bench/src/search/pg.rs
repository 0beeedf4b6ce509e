//! The PostgreSQL baseline (seed 004's design): a table with a GIN index on
//! `to_tsvector('english', ...)`, ranked with `ts_rank`. The benchmark starts its own server
//! (initdb in a temp dir, 127.0.0.1, a free port) and stops it by PID.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shopflow_views::ProductRow;
use tokio_postgres::{Client, NoTls, Statement};

pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

/// The query: every word must match (plainto_tsquery ANDs them), best `ts_rank` first.
pub const QUERY: &str = "SELECT id FROM products WHERE tsv @@ plainto_tsquery('english', $1) \
     ORDER BY ts_rank(tsv, plainto_tsquery('english', $1)) DESC LIMIT 10";

fn bin_dir() -> anyhow::Result<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output();
    if let Ok(output) = output {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    for candidate in ["/usr/lib/postgresql/15/bin", "/usr/local/bin"] {
        if Path::new(candidate).join("initdb").exists() {
            return Ok(candidate.into());
        }
    }
    bail!("PostgreSQL (initdb, pg_ctl) not found")
}

impl Postgres {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let bin = bin_dir()?;
        // initdb and postgres refuse to run as root: as root, both run as the `postgres` user
        // (which the PostgreSQL packages create), owning the temp dir.
        let as_user = |program: &Path| -> Command {
            if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        if is_root() {
            Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status()?;
        }
        let status = as_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "bench", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("initdb")?;
        if !status.success() {
            bail!("initdb failed");
        }
        let port = free_port()?;
        let options = format!("-p {port} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_connections=64 -c fsync=off -k {}", dir.path().display());
        let status = as_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("pg_ctl start")?;
        if !status.success() {
            bail!("pg_ctl start failed (see its log)");
        }
        Ok(Self { _dir: dir, data, bin, port })
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let (client, connection) =
            tokio_postgres::connect(&format!("host=127.0.0.1 port={} user=bench dbname=postgres", self.port), NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Loads the catalog and builds the GIN index; returns (load, index) durations.
    pub async fn load(&self, rows: &[ProductRow]) -> anyhow::Result<(Duration, Duration)> {
        let client = self.connect().await?;
        client
            .batch_execute(
                "CREATE TABLE products (id text PRIMARY KEY, name text, description text, brand text, category text, \
                 price bigint, tsv tsvector)",
            )
            .await?;
        let started = Instant::now();
        let insert = client
            .prepare(
                "INSERT INTO products (id, name, description, brand, category, price, tsv) \
                 SELECT i, n, d, b, c, p, \
                   setweight(to_tsvector('english', n), 'A') || setweight(to_tsvector('english', b), 'B') || \
                   setweight(to_tsvector('english', c), 'C') || setweight(to_tsvector('english', d), 'D') \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) AS t(i, n, d, b, c, p)",
            )
            .await?;
        for chunk in rows.chunks(5_000) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.product_id.as_str()).collect();
            let names: Vec<&str> = chunk.iter().map(|r| r.name.as_str()).collect();
            let descriptions: Vec<&str> = chunk.iter().map(|r| r.description.as_str()).collect();
            let brands: Vec<&str> = chunk.iter().map(|r| r.brand_name.as_deref().unwrap_or("")).collect();
            let categories: Vec<&str> = chunk.iter().map(|r| r.category_name.as_deref().unwrap_or("")).collect();
            let prices: Vec<i64> = chunk.iter().map(|r| r.price.amount_minor).collect();
            client.execute(&insert, &[&ids, &names, &descriptions, &brands, &categories, &prices]).await?;
        }
        let loaded = started.elapsed();
        let started = Instant::now();
        client.batch_execute("CREATE INDEX products_tsv ON products USING GIN (tsv); ANALYZE products;").await?;
        Ok((loaded, started.elapsed()))
    }

    pub async fn prepare(client: &Client) -> anyhow::Result<Statement> {
        Ok(client.prepare(QUERY).await?)
    }

    pub async fn search(client: &Client, statement: &Statement, text: &str) -> anyhow::Result<Vec<String>> {
        let rows = client.query(statement, &[&text]).await?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    fn stop(&self) {
        let as_root = is_root();
        let mut command = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        // pg_ctl stops the server by the PID in its postmaster.pid: this one, not any other.
        let _ = command.arg("-D").arg(&self.data).args(["-m", "fast", "-w", "stop"]).stdout(std::process::Stdio::null()).status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
