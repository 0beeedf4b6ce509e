//! The limiters: GCRA cells per key (`governor`), and the failed-login throttle built on them.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use serde::Deserialize;
use shopflow_events::Id;

use super::GatewayConfig;
use crate::config::duration;
use crate::error::ApiError;

/// Up to `burst` at once, one more every `every`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub burst: u32,
    #[serde(with = "duration")]
    pub every: Duration,
}

impl RateConfig {
    pub const fn new(burst: u32, every: Duration) -> Self {
        Self { burst, every }
    }

    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst.max(1)).expect("at least 1");
        Quota::with_period(self.every.max(Duration::from_nanos(1))).expect("a positive period").allow_burst(burst)
    }
}

struct Keyed<K: Clone + Hash + Eq> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Clone + Hash + Eq> Keyed<K> {
    fn new(config: RateConfig) -> Self {
        Self { limiter: DefaultKeyedRateLimiter::keyed(config.quota()) }
    }

    /// Takes one cell for `key`, or says how long until one is free.
    fn take(&self, key: &K) -> Result<(), Duration> {
        // The limiter's own clock: a fresh one would be calibrated on every refusal.
        self.limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

/// Every rate limit of the gateway.
pub struct Limiters {
    enabled: bool,
    per_ip: Keyed<IpAddr>,
    per_user: Keyed<Id>,
    credentials_per_ip: Keyed<IpAddr>,
    pub logins: LoginThrottle,
}

impl Limiters {
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            enabled: config.rate_limits,
            per_ip: Keyed::new(config.per_ip),
            per_user: Keyed::new(config.per_user),
            credentials_per_ip: Keyed::new(config.credentials_per_ip),
            logins: LoginThrottle::new(config),
        }
    }

    /// Admits one request from `ip`.
    pub fn admit_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        self.per_ip.take(&ip).map_err(rate_limited)
    }

    /// Admits one signed-in request of `user`.
    pub fn admit_user(&self, user: &Id) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        self.per_user.take(user).map_err(rate_limited)
    }

    /// Admits one request to a credential endpoint (register, login, refresh) from `ip`.
    pub fn admit_credentials(&self, ip: IpAddr) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        self.credentials_per_ip.take(&ip).map_err(rate_limited)
    }

    /// Drops the state of keys that have been idle long enough to be full again.
    pub fn forget_idle(&self) {
        self.per_ip.forget_idle();
        self.per_user.forget_idle();
        self.credentials_per_ip.forget_idle();
        self.logins.forget_idle();
    }
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError::RateLimited { retry_after: wait }
}

/// Failed-login throttling (seed 003's "throttling"): each failure takes a cell of the
/// account's and of the IP's limiter; once either is empty, that account or IP is blocked
/// until a cell is free again, and attempts are refused before the password is even checked
/// (so a blocked account costs no hashing either).
pub struct LoginThrottle {
    enabled: bool,
    per_account: Keyed<String>,
    per_ip: Keyed<IpAddr>,
    blocked: Mutex<HashMap<Blocked, Instant>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Blocked {
    Account(String),
    Ip(IpAddr),
}

impl LoginThrottle {
    fn new(config: &GatewayConfig) -> Self {
        Self {
            enabled: config.rate_limits,
            per_account: Keyed::new(config.login_failures_per_account),
            per_ip: Keyed::new(config.login_failures_per_ip),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses an attempt on a blocked account or from a blocked IP.
    pub fn check(&self, account: &str, ip: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let blocked = self.blocked.lock();
        let until = [Blocked::Account(account.to_owned()), Blocked::Ip(ip)]
            .iter()
            .filter_map(|key| blocked.get(key))
            .filter(|until| **until > now)
            .max()
            .copied();
        match until {
            Some(until) => Err(ApiError::TooManyFailedLogins { retry_after: until - now }),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt; blocks the account or IP whose limiter ran out.
    pub fn failed(&self, account: &str, ip: IpAddr) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let mut blocked = self.blocked.lock();
        if let Err(wait) = self.per_account.take(&account.to_owned()) {
            blocked.insert(Blocked::Account(account.to_owned()), now + wait);
            tracing::warn!(client_ip = %ip, "login failures exhausted an account's allowance; blocking it for a while");
        }
        if let Err(wait) = self.per_ip.take(&ip) {
            blocked.insert(Blocked::Ip(ip), now + wait);
            tracing::warn!(client_ip = %ip, "login failures exhausted an ip's allowance; blocking it for a while");
        }
    }

    fn forget_idle(&self) {
        let now = Instant::now();
        self.blocked.lock().retain(|_, until| *until > now);
        self.per_account.forget_idle();
        self.per_ip.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GatewayConfig {
        GatewayConfig {
            per_ip: RateConfig::new(3, Duration::from_secs(60)),
            per_user: RateConfig::new(2, Duration::from_secs(60)),
            login_failures_per_account: RateConfig::new(2, Duration::from_secs(60)),
            login_failures_per_ip: RateConfig::new(100, Duration::from_secs(60)),
            ..GatewayConfig::default()
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn requests_over_the_burst_wait_for_the_next_cell() {
        let limiters = Limiters::new(&config());
        for _ in 0..3 {
            limiters.admit_ip(IP).unwrap();
        }
        match limiters.admit_ip(IP) {
            Err(ApiError::RateLimited { retry_after }) => {
                assert!(retry_after > Duration::from_secs(50) && retry_after <= Duration::from_secs(60), "{retry_after:?}")
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Another IP has its own cells.
        limiters.admit_ip(IpAddr::from([10, 0, 0, 1])).unwrap();
    }

    #[test]
    fn users_are_limited_on_their_own() {
        let limiters = Limiters::new(&GatewayConfig { per_ip: RateConfig::new(100, Duration::from_secs(1)), ..config() });
        let user = Id::from("u1");
        limiters.admit_user(&user).unwrap();
        limiters.admit_user(&user).unwrap();
        assert!(matches!(limiters.admit_user(&user), Err(ApiError::RateLimited { .. })));
        limiters.admit_user(&Id::from("u2")).unwrap();
    }

    #[test]
    fn failed_logins_block_the_account_then_every_attempt_on_it() {
        let throttle = LoginThrottle::new(&config());
        throttle.check("a@example.com", IP).unwrap();
        throttle.failed("a@example.com", IP);
        throttle.failed("a@example.com", IP);
        throttle.check("a@example.com", IP).unwrap();
        throttle.failed("a@example.com", IP); // the third failure runs the allowance out
        assert!(matches!(throttle.check("a@example.com", IP), Err(ApiError::TooManyFailedLogins { .. })));
        throttle.check("b@example.com", IP).unwrap();
    }

    #[test]
    fn disabled_limits_admit_everything() {
        let limiters = Limiters::new(&GatewayConfig { rate_limits: false, ..config() });
        for _ in 0..100 {
            limiters.admit_ip(IP).unwrap();
            limiters.logins.failed("a@example.com", IP);
        }
        limiters.logins.check("a@example.com", IP).unwrap();
    }
}
