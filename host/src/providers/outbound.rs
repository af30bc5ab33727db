//! What every call out to a platform's API shares: an HTTPS client with
//! timeouts that follows no redirect (a redirect would resend credentials
//! somewhere else), and error messages kept short.

use std::time::Duration;

/// How much of a platform's error message is kept.
const MESSAGE_MAX: usize = 300;

pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ionflux-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `s` cut to a bounded length, on a character boundary.
pub fn clip(mut s: String) -> String {
    if s.len() > MESSAGE_MAX {
        let mut end = MESSAGE_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
