//! The `healthcheck` sub-command of both binaries: container images carry
//! no HTTP client, so each binary can ask its own readiness URL.

use std::time::Duration;

use anyhow::Context as _;

/// How long the service may take to answer before it counts as unhealthy.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `Ok` when `url` answers 2xx within [`HEALTHCHECK_TIMEOUT`]; otherwise an
/// error that says what went wrong (the binary exits 1).
pub async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let status = reqwest::Client::new()
        .get(url)
        .timeout(HEALTHCHECK_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("{url} is unreachable"))?
        .status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}
