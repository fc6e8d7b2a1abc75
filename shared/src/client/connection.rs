//! The connection task: owns the QUIC connection of a [`Client`], forwards states and
//! control messages to it, reconnects with the resume ticket and follows redirects.

use super::*;

/// Control frames waiting in a link's reader: the server sends few.
const LINK_FRAMES_LEN_MAX: usize = 4;
/// How long a link that failed while its connection lives is read for a final frame
/// still on its way (the server closes at most `CLOSE_GRACE`, 2 s, after sending one).
const FINAL_FRAME_WAIT: Duration = Duration::from_secs(2);

/// One QUIC connection with its control stream.
pub(super) struct Link {
    pub(super) connection: quinn::Connection,
    pub(super) send: quinn::SendStream,
    pub(super) frames: FrameReader<ControlS2c>,
}

/// Why the connection task leaves its current link.
enum Leave {
    /// The connection dropped: resume.
    Dropped(ClientError),
    /// Follow a redirect.
    Redirect(RedirectS2c),
    /// The session is over.
    Final(ClientError),
    /// The caller asked to log out.
    Logout(oneshot::Sender<Result<(), ClientError>>),
}

/// Owns the connection: forwards states and control messages, reconnects, redirects.
pub(super) struct ConnectionTask {
    pub(super) config: ClientConfig,
    pub(super) endpoint: quinn::Endpoint,
    /// The node the session is on now (changes with redirects).
    pub(super) server: SocketAddr,
    pub(super) shared: Arc<Shared>,
    pub(super) resume_ticket: Vec<u8>,
    /// The current connection's generation.
    pub(super) generation: u64,
    pub(super) deliveries: mpsc::Sender<Delivery>,
    pub(super) control: mpsc::Sender<ControlS2c>,
    /// The caller's requests, written to the control stream in order.
    pub(super) requests: mpsc::Receiver<ControlC2s>,
}

impl ConnectionTask {
    pub(super) async fn run(
        mut self,
        mut link: Link,
        mut logout: oneshot::Receiver<oneshot::Sender<Result<(), ClientError>>>,
    ) {
        loop {
            let leave = self.serve(&mut link, &mut logout).await;
            self.account(&link.connection);
            let (addr, ticket) = match leave {
                Leave::Logout(done) => {
                    let result = self.log_out(link).await;
                    self.shared.connection.send_replace(None);
                    self.shared.set_state(ConnectionState::Disconnected);
                    self.endpoint.wait_idle().await;
                    let _ = done.send(result);
                    return;
                }
                Leave::Final(error) => {
                    link.connection
                        .close(close_code::NORMAL.into(), b"session over");
                    self.shared.fail(error);
                    return;
                }
                Leave::Dropped(error) => {
                    tracing::debug!(%error, "connection dropped; resuming");
                    (self.server, self.resume_ticket.clone())
                }
                Leave::Redirect(redirect) => {
                    link.connection
                        .close(close_code::NORMAL.into(), b"following redirect");
                    match resolve(&redirect.addr).await {
                        Some(addr) => {
                            self.shared.redirects.fetch_add(1, Ordering::Relaxed);
                            self.forward(ControlS2c::Redirect(redirect.clone()));
                            (addr, redirect.ticket)
                        }
                        None => {
                            self.shared.fail(ClientError::Protocol(format!(
                                "redirect to an unresolvable address {:?}",
                                redirect.addr
                            )));
                            return;
                        }
                    }
                }
            };
            drop(link);
            self.shared.connection.send_replace(None);
            link = match self.reconnect(addr, ticket).await {
                Ok(link) => link,
                Err(error) => {
                    self.shared.fail(error);
                    return;
                }
            };
        }
    }

    /// Forwards traffic of `link` until it ends.
    async fn serve(
        &mut self,
        link: &mut Link,
        logout: &mut oneshot::Receiver<oneshot::Sender<Result<(), ClientError>>>,
    ) -> Leave {
        loop {
            tokio::select! {
                datagram = link.connection.read_datagram() => match datagram {
                    Ok(bytes) => self.deliver_state(&bytes),
                    Err(e) => return self.lost(link, e.to_string()).await,
                },
                stream = link.connection.accept_uni() => {
                    let mut stream = match stream {
                        Ok(stream) => stream,
                        Err(e) => return self.lost(link, e.to_string()).await,
                    };
                    match stream.read_to_end(STATE_STREAM_BYTES_MAX).await {
                        Ok(bytes) => self.deliver_state(&bytes),
                        Err(e) => return self.lost(link, format!("state stream: {e}")).await,
                    }
                }
                frame = link.frames.recv() => match frame {
                    Some(Ok(ControlS2c::Redirect(redirect))) => return Leave::Redirect(redirect),
                    Some(Ok(ControlS2c::Kicked(kicked))) => return Leave::Final(ClientError::Kicked(kicked)),
                    Some(Ok(ControlS2c::Error(error))) => return Leave::Final(ClientError::Refused(error)),
                    Some(Ok(ControlS2c::ResumeTicket(ticket))) => self.resume_ticket = ticket,
                    Some(Ok(message)) => self.forward(message),
                    Some(Err(FrameError::Closed(reason))) => return self.lost(link, reason).await,
                    None => return self.lost(link, "control stream ended".into()).await,
                    Some(Err(e)) => return Leave::Final(e.into()),
                },
                Some(request) = self.requests.recv() => {
                    if let Err(e) = write_frame(&mut link.send, &request).await {
                        return self.lost(link, format!("control stream: {e}")).await;
                    }
                }
                done = &mut *logout => match done {
                    Ok(done) => return Leave::Logout(done),
                    // The Client is gone: nothing left to serve.
                    Err(_) => return Leave::Final(ClientError::NotConnected),
                },
            }
        }
    }

    /// Hands a control message to the caller without waiting (see
    /// [`CONTROL_QUEUE_LEN_MAX`]). A closed queue means the `Client` is gone, and this task
    /// with it.
    fn forward(&self, message: ControlS2c) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.control.try_send(message) {
            self.shared.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Classifies the end of `link`: a final frame or close code the server sent ends the
    /// session; anything else (a timeout, a reset, a node restart) is resumed.
    async fn lost(&mut self, link: &mut Link, error: String) -> Leave {
        // Frames read, or still on their way while the connection lives (a request written
        // as the server ended the session may fail before its final frame is read): a
        // final one decides; events still go out. The control stream ends after a final
        // frame; FINAL_FRAME_WAIT bounds the wait on a connection that is going silent.
        let deadline = tokio::time::Instant::now() + FINAL_FRAME_WAIT;
        loop {
            let frame = if link.connection.close_reason().is_some() {
                link.frames.try_recv()
            } else {
                tokio::time::timeout_at(deadline, link.frames.recv())
                    .await
                    .unwrap_or_default()
            };
            match frame {
                Some(Ok(ControlS2c::Kicked(kicked))) => {
                    return Leave::Final(ClientError::Kicked(kicked));
                }
                Some(Ok(ControlS2c::Redirect(redirect))) => return Leave::Redirect(redirect),
                Some(Ok(ControlS2c::ResumeTicket(ticket))) => self.resume_ticket = ticket,
                Some(Ok(message)) => self.forward(message),
                Some(Err(_)) | None => break,
            }
        }
        match link.connection.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(close))
                if [
                    close_code::REFUSED,
                    close_code::TAKEN_OVER,
                    close_code::PROTOCOL_VIOLATION,
                ]
                .iter()
                .any(|&code| close.error_code == code.into()) =>
            {
                Leave::Final(ClientError::Connection(format!(
                    "closed by the server: {close}"
                )))
            }
            Some(reason) => Leave::Dropped(ClientError::Connection(reason.to_string())),
            None => Leave::Dropped(ClientError::Connection(error)),
        }
    }

    fn deliver_state(&self, bytes: &[u8]) {
        // A state that does not decode is skipped like a lost one; the decoder refuses
        // anything inconsistent before it touches the table.
        let Ok(state) = codec::decode::<StateS2c>(bytes, STATE_STREAM_BYTES_MAX) else {
            return;
        };
        if self.deliveries.try_send(Delivery::State(state)).is_err() {
            self.shared.states_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds a finished connection's byte counts to the totals.
    fn account(&self, connection: &quinn::Connection) {
        let stats = connection.stats();
        self.shared
            .bytes_in
            .fetch_add(stats.udp_rx.bytes, Ordering::Relaxed);
        self.shared
            .bytes_out
            .fetch_add(stats.udp_tx.bytes, Ordering::Relaxed);
    }

    /// Connects to `addr` with `ticket`, retrying with capped exponential backoff and
    /// jitter. A refused ticket (expired, or from another cluster) falls back once to a
    /// plain login with the token.
    async fn reconnect(&mut self, addr: SocketAddr, ticket: Vec<u8>) -> Result<Link, ClientError> {
        let policy = self.config.reconnect;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(policy.delay_min)
            .with_max_delay(policy.delay_max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(policy.attempts_max as usize)
            .build();
        let mut ticket = Some(ticket);
        let mut attempt = 0u32;
        let mut last_error = ClientError::NotConnected;
        while attempt < policy.attempts_max {
            attempt += 1;
            self.shared
                .set_state(ConnectionState::Reconnecting { attempt });
            let hello = hello(&self.config.token, ticket.clone());
            match open_link(&self.endpoint, addr, &self.config, &hello).await {
                Ok((link, welcome)) => {
                    self.server = addr;
                    self.resume_ticket = welcome.resume_ticket.clone();
                    self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.generation += 1;
                    let generation = self.generation;
                    // Ordered with the states: the caller resets its decoder here.
                    if self
                        .deliveries
                        .send(Delivery::NewSession {
                            welcome,
                            generation,
                        })
                        .await
                        .is_err()
                    {
                        return Err(ClientError::NotConnected);
                    }
                    self.shared
                        .connection
                        .send_replace(Some((generation, link.connection.clone())));
                    self.shared.set_state(ConnectionState::Connected);
                    return Ok(link);
                }
                Err(ClientError::Refused(e))
                    if e.code == ErrorCode::BadTicket && ticket.is_some() =>
                {
                    tracing::debug!(message = %e.message, "ticket refused; logging in with the token");
                    ticket = None;
                    attempt -= 1;
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    // Never sooner than the server said (a rate limit, a full node).
                    let said = match &e {
                        ClientError::Refused(r) => r
                            .retry_after_ms
                            .map(|ms| Duration::from_millis(u64::from(ms)).min(policy.delay_max)),
                        _ => None,
                    };
                    last_error = e;
                    match delays.next() {
                        Some(delay) => {
                            tokio::time::sleep(delay.max(said.unwrap_or_default())).await
                        }
                        None => break,
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Sends `Logout` and waits for `Bye` (the server has saved the player).
    async fn log_out(&mut self, mut link: Link) -> Result<(), ClientError> {
        write_frame(&mut link.send, &ControlC2s::Logout).await?;
        let result = loop {
            match link.frames.recv().await {
                Some(Ok(ControlS2c::Bye)) => break Ok(()),
                Some(Ok(ControlS2c::Kicked(k))) => break Err(ClientError::Kicked(k)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(e.into()),
                None => break Err(ClientError::Connection("closed before Bye".into())),
            }
        };
        link.connection.close(close_code::NORMAL.into(), b"bye");
        self.account(&link.connection);
        result
    }
}

pub(super) fn hello(token: &str, ticket: Option<Vec<u8>>) -> ControlC2s {
    ControlC2s::Hello(HelloC2s {
        protocol_version: PROTOCOL_VERSION,
        token: token.into(),
        ticket,
    })
}

/// `host:port` to an address (the first the resolver gives).
async fn resolve(addr: &str) -> Option<SocketAddr> {
    if let Ok(addr) = addr.parse() {
        return Some(addr);
    }
    tokio::net::lookup_host(addr).await.ok()?.next()
}

/// The QUIC endpoint a [`Client`] connects from: TLS 1.3, ALPN `tessera/1`, trusting only
/// [`ClientConfig::pinned_cert`]. Public for tools and tests that speak the protocol by
/// hand (PROTOCOL.md) on a correctly configured connection.
pub fn endpoint(config: &ClientConfig) -> Result<quinn::Endpoint, ClientError> {
    let client_config = quic_client_config(config)?;
    let bind: SocketAddr = if config.server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let mut endpoint =
        quinn::Endpoint::client(bind).map_err(|e| ClientError::Setup(e.to_string()))?;
    endpoint.set_default_client_config(client_config);
    Ok(endpoint)
}

/// The QUIC client configuration of [`endpoint`]: TLS 1.3, ALPN, the pinned certificate,
/// and quinn's default transport, which advertises `max_datagram_frame_size` 65535 as
/// PROTOCOL.md requires. Public for tests that vary it.
pub fn quic_client_config(config: &ClientConfig) -> Result<quinn::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(config.pinned_cert.clone()))
        .map_err(|e| ClientError::Setup(format!("pinned certificate: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| ClientError::Setup(e.to_string()))?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(3)));
    client_config.transport_config(Arc::new(transport));
    Ok(client_config)
}

/// One connect-and-login attempt, bounded by the login timeout.
pub(super) async fn open_link(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    config: &ClientConfig,
    hello: &ControlC2s,
) -> Result<(Link, WelcomeS2c), ClientError> {
    tokio::time::timeout(config.login_timeout, async {
        let connection = endpoint
            .connect(addr, &config.server_name)
            .map_err(|e| ClientError::Connection(e.to_string()))?
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        write_frame(&mut send, hello).await?;
        let welcome = match read_frame::<ControlS2c>(&mut recv).await? {
            ControlS2c::Welcome(w) => w,
            ControlS2c::Error(e) => {
                // Close now: the server waits for it before closing itself.
                connection.close(close_code::NORMAL.into(), b"refused");
                return Err(ClientError::Refused(e));
            }
            ControlS2c::Kicked(k) => return Err(ClientError::Kicked(k)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )));
            }
        };
        Ok((
            Link {
                connection,
                send,
                frames: FrameReader::spawn(recv, LINK_FRAMES_LEN_MAX),
            },
            welcome,
        ))
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}
