//! Test harness: real servers on loopback with real storage in temp directories.
//!
//! * [`TestServer`]: the server in this process (fast; many per test binary).
//! * [`ServerProcess`]: the `themisdb` binary as a child process, for tests that kill
//!   or signal it.
//! * [`RawConn`]: a raw socket speaking frames by hand, for hostile and malformed input.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use themis_proto::wire::{self, ErrorCode, OpCode};
use themis_proto::{encode_frame, FrameCodec};
use themis_server::config::Config;
use themis_server::{Server, ServerHandle, StartOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ROOT_PASSWORD: &str = "test-root-password";

/// A config for tests: loopback, port 0, a fresh data dir, cheap bcrypt.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.data_dir = data_dir.to_path_buf();
    config.server.bcrypt_cost = 4;
    config.wire.bind_address = "127.0.0.1".into();
    config.wire.port = 0;
    config
}

pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let handle = Server::start(
            config,
            StartOptions {
                root_password: Some(ROOT_PASSWORD.into()),
            },
        )
        .await
        .expect("server starts");
        let addr = handle.local_addr();
        Self {
            handle: Some(handle),
            addr,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("themis://root:{ROOT_PASSWORD}@{}", self.addr)
    }

    pub async fn client(&self) -> themis_client::Client {
        themis_client::Client::connect(&self.url())
            .await
            .expect("client connects")
    }

    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.expect("clean shutdown");
        }
    }
}

/// The `themisdb` binary, started as a child process.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Starts `themisdb serve` on `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> Self {
        Self::start_on(data_dir, 0, extra_env)
    }

    /// [`Self::start`] on a given port (0: any free one), e.g. to restart a server
    /// where its clients expect it.
    pub fn start_on(data_dir: &Path, port: u16, extra_env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_themisdb"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .current_dir(data_dir.parent().unwrap_or(data_dir))
            .env("THEMIS_ROOT_PASSWORD", ROOT_PASSWORD)
            .env("THEMIS_SERVER_BCRYPT_COST", "4")
            .env("THEMIS_SERVER_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn themisdb");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(addr) = line.strip_prefix("themisdb listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its address")
            .parse()
            .expect("address parses");
        Self {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("themis://root:{ROOT_PASSWORD}@{}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the server, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One decoded frame from the server.
#[derive(Debug)]
pub struct Frame {
    pub opcode: i32,
    pub request_id: u64,
    pub body: Bytes,
}

impl Frame {
    pub fn op(&self) -> OpCode {
        OpCode::try_from(self.opcode).expect("known opcode")
    }

    pub fn error(&self) -> wire::Error {
        assert_eq!(
            self.op(),
            OpCode::OpError,
            "expected OP_ERROR, got {self:?}"
        );
        wire::Error::decode(self.body.clone()).expect("Error decodes")
    }

    pub fn decode<M: Message + Default>(&self) -> M {
        M::decode(self.body.clone()).expect("body decodes")
    }
}

/// A hand-driven connection for malformed and hostile input.
pub struct RawConn {
    pub stream: TcpStream,
    buf: BytesMut,
    codec: FrameCodec,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self::from_stream(stream)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send<M: Message>(&mut self, opcode: OpCode, request_id: u64, msg: &M) {
        let mut buf = BytesMut::new();
        encode_frame(&self.codec, opcode, request_id, msg, &mut buf).expect("encode");
        self.send_raw(&buf).await;
    }

    /// Sends a frame whose payload is `payload` verbatim.
    pub async fn send_payload(&mut self, payload: &[u8]) {
        let mut buf = BytesMut::new();
        self.codec.encode(payload, &mut buf).expect("encode");
        self.send_raw(&buf).await;
    }

    /// The next frame, or `None` on EOF. Panics after 10 s.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("frame or EOF within the limit")
    }

    /// `Err(())` when nothing (neither frame nor EOF) arrives within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Frame>, ()> {
        match self.try_recv_within(limit).await {
            Ok(frame) => Ok(frame),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(()),
            // A reset is a failure of the "never reset the peer" rule: surface it.
            Err(e) => panic!("read failed: {e}"),
        }
    }

    pub async fn expect_eof(&mut self) {
        let f = self.recv().await;
        assert!(f.is_none(), "expected the server to close, got {f:?}");
    }

    pub async fn handshake(&mut self, username: &str, password: &str) -> wire::HandshakeResponse {
        let req = wire::HandshakeRequest {
            protocol_version: "1.0".into(),
            client_name: "raw-test".into(),
            username: username.into(),
            password: password.into(),
            ..Default::default()
        };
        self.send(OpCode::OpHandshake, 1, &req).await;
        let f = self.recv().await.expect("handshake answer");
        assert_eq!(f.op(), OpCode::OpHandshake, "{f:?}");
        f.decode()
    }

    pub async fn login(addr: SocketAddr) -> Self {
        let mut c = Self::connect(addr).await;
        let resp = c.handshake("root", ROOT_PASSWORD).await;
        assert!(resp.success, "{resp:?}");
        c
    }

    /// PING round trip on this connection; proves it is still served.
    pub async fn ping_ok(&mut self, request_id: u64) {
        self.send(OpCode::OpPing, request_id, &wire::Ping { timestamp_ms: 77 })
            .await;
        let f = self.recv().await.expect("pong");
        assert_eq!(f.op(), OpCode::OpPong);
        assert_eq!(f.request_id, request_id);
        let pong: wire::Pong = f.decode();
        assert_eq!(pong.timestamp_ms, 77);
    }
}

pub fn code_of(err: &wire::Error) -> ErrorCode {
    ErrorCode::try_from(err.code).expect("known code")
}

/// Asserts that `result` failed with the server error `code` and that its message
/// contains every fragment in `needles`; returns the message.
#[track_caller]
pub fn expect_server_error<T: std::fmt::Debug>(
    result: Result<T, themis_client::Error>,
    code: ErrorCode,
    needles: &[&str],
) -> String {
    let err = match result {
        Ok(v) => panic!("expected {code:?}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(err.code(), Some(code), "wrong code: {err}");
    let message = err
        .server_message()
        .unwrap_or_else(|| panic!("not a server error: {err:?}"))
        .to_owned();
    for needle in needles {
        assert!(
            message.contains(needle),
            "message lacks {needle:?}: {message}"
        );
    }
    message
}

/// Fallible variants of [`RawConn`]'s calls, for tests whose server may be killed
/// under them (a refused connection, a reset or a broken pipe is an `Err`, not a
/// panic).
impl RawConn {
    pub async fn try_connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self::from_stream(stream))
    }

    pub async fn try_send<M: Message>(
        &mut self,
        opcode: OpCode,
        request_id: u64,
        msg: &M,
    ) -> std::io::Result<()> {
        let mut buf = BytesMut::new();
        encode_frame(&self.codec, opcode, request_id, msg, &mut buf).expect("encode");
        self.stream.write_all(&buf).await
    }

    /// The next frame; `Ok(None)` on EOF, `Err` on a socket error or when nothing
    /// arrives within `limit` (`ErrorKind::TimedOut`).
    pub async fn try_recv_within(&mut self, limit: Duration) -> std::io::Result<Option<Frame>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(payload) = self
                .codec
                .decode(&mut self.buf)
                .expect("server frame is valid")
            {
                let env = wire::Envelope::decode(payload).expect("server envelope decodes");
                return Ok(Some(Frame {
                    opcode: env.opcode,
                    request_id: env.request_id,
                    body: env.body,
                }));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

impl RawConn {
    /// A connection over a stream the test set up itself (socket options, say).
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            codec: FrameCodec::default(),
        }
    }
}

/// `themisdb cert …` (the real binary) into `dir`.
pub fn cert(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_themisdb"))
        .arg("cert")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .expect("run themisdb cert");
    assert!(
        out.status.success(),
        "themisdb cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificates from `themisdb cert` in a temp dir: a CA (`ca.pem`), a server
/// certificate for 127.0.0.1 and localhost (`server.pem`, `server-key.pem`) and a
/// client certificate for `root` (`client.pem`, `client-key.pem`).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        cert(dir.path(), &["ca"]);
        cert(
            dir.path(),
            &["server", "--san", "127.0.0.1", "--san", "localhost"],
        );
        cert(dir.path(), &["client", "--name", "root"]);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A CA made with rcgen and what it issued, as PEM files in a temp dir (for tests
/// that need certificates `themisdb cert` does not make: expired, foreign CAs).
pub struct TestCa {
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// One certificate and its key, on disk.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca-cert.pem"), ca.pem()).unwrap();
        Self { dir, ca }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca-cert.pem")
    }

    pub fn issue(&self, name: &str, sans: &[&str], client: bool, expired: bool) -> Issued {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &*self.ca).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}-cert.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    pub fn server(&self) -> Issued {
        self.issue("server", &["127.0.0.1", "localhost"], false, false)
    }
}

/// The certificates in a PEM file.
pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}
