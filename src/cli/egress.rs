//! `egress [NAME] [--follow] [--json]`: what a bottle's proxy allowed and
//! denied, read from its log. Events go to stdout, as data.

use std::io::Write;

use futures_util::StreamExt;

use super::args::EgressArgs;
use super::{Error, bottle_name};
use crate::backend::{AnyBackend, Backend};
use crate::core::egress_log::{LogLine, parse_line};
use crate::printer::Printer;

pub async fn run(args: EgressArgs, printer: &Printer) -> Result<u8, Error> {
    let backend = AnyBackend::from_env(printer)?;
    let active = backend.list_active().await?;
    let bottle = bottle_name::resolve(&active, args.name.as_deref())?;
    let mut lines = backend.proxy_log(&bottle.name, args.follow).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            // Following, the log ends with the bottle: however the engine
            // reports that, the feed is over.
            Err(e) if args.follow => {
                tracing::debug!("the proxy log ended: {e}");
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let LogLine::Egress(event) = parse_line(&line) else {
            continue;
        };
        let text = if args.json {
            event.to_json_line()
        } else {
            event.to_string()
        };
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(Error::Stdout)?;
    }
    Ok(0)
}
