//! `egress` and the denial summary: a bottle's proxy log as lines.

use futures_util::stream::BoxStream;

use super::client::{Engine, EngineError};
use super::find::{FindError, find_bottle};

/// The log of the proxy of the bottle called `name`: what it wrote so far,
/// then, with `follow`, every later line until the proxy stops.
pub(crate) async fn proxy_log<E: Engine>(
    engine: &E,
    name: &str,
    follow: bool,
) -> Result<BoxStream<'static, Result<String, EngineError>>, FindError> {
    let bottle = find_bottle(engine, name).await?;
    Ok(engine.log_lines(&bottle.proxy_id, follow))
}
