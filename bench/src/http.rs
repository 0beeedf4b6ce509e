//! The load generators' HTTP client.

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The serving configuration of an in-process benchmark server: any free port, every source
/// topic, a random signing key, and rate limits off (a benchmark is one very busy client:
/// what is measured is the route, not the limiter's refusals).
pub(crate) fn serving_config() -> shopflow_serving::ServingConfig {
    let mut serving = shopflow_serving::ServingConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        source_topics: shopflow_dataflow::pipeline::SOURCE_TOPICS.iter().map(|t| t.name().to_owned()).collect(),
        ..Default::default()
    };
    serving.auth.key = Some(uuid::Uuid::new_v4().simple().to_string().repeat(2));
    serving.gateway.rate_limits = false;
    serving
}

/// A minimal HTTP/1.1 keep-alive client: one request at a time, bodies framed by
/// content-length or chunked. Hand-written rather than reqwest because the binary does not
/// depend on an HTTP client and because the load generator shares the cores with the server:
/// the less CPU it takes per request, the less it distorts what it measures.
pub(crate) struct Connection {
    io: BufReader<TcpStream>,
    line: String,
    pub(crate) body: Vec<u8>,
}

impl Connection {
    pub(crate) async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        // Small requests, one at a time: Nagle's algorithm would only delay them.
        stream.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::with_capacity(16 * 1024, stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends a GET (with `headers`: complete `name: value\r\n` lines, or "") and reads the
    /// whole answer into `self.body`; returns the status and whether the connection may be
    /// reused.
    pub(crate) async fn get(&mut self, path: &str, headers: &str) -> anyhow::Result<(u16, bool)> {
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: shopflow\r\naccept: application/json\r\n{headers}\r\n");
        self.io.get_mut().write_all(request.as_bytes()).await?;
        self.read_response().await
    }

    /// Sends a POST with a JSON `body` (headers as for [`Self::get`]) and reads the answer
    /// like `get` does. Head and body go out in one write: one segment per request.
    pub(crate) async fn post_json(&mut self, path: &str, headers: &str, body: &[u8]) -> anyhow::Result<(u16, bool)> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: shopflow\r\naccept: application/json\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.io.get_mut().write_all(&request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<(u16, bool)> {
        self.read_line().await.context("reading the status line")?;
        let status = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("bad status line {:?}", self.line))?;
        let (mut length, mut chunked, mut keep_alive) = (None, false, true);
        loop {
            self.read_line().await.context("reading the headers")?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| anyhow!("bad header {header:?}"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("bad content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                keep_alive = !value.eq_ignore_ascii_case("close");
            }
        }
        self.body.clear();
        if chunked {
            loop {
                self.read_line().await.context("reading a chunk size")?;
                let size = self.line.trim_end().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size.trim(), 16)
                    .with_context(|| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    // Trailers, if any, up to the empty line.
                    loop {
                        self.read_line().await?;
                        if self.line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = self.body.len();
                self.body.resize(start + size, 0);
                self.io.read_exact(&mut self.body[start..]).await?;
                let mut crlf = [0u8; 2];
                self.io.read_exact(&mut crlf).await?;
            }
        } else if let Some(n) = length {
            self.body.resize(n, 0);
            self.io.read_exact(&mut self.body).await?;
        } else {
            bail!("answer without content-length or chunked encoding");
        }
        Ok((status, keep_alive))
    }

    async fn read_line(&mut self) -> anyhow::Result<()> {
        self.line.clear();
        if self.io.read_line(&mut self.line).await? == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }
}

