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
    let name = bottle.name.clone();
    let mut lines = backend.proxy_log(&name, args.follow).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            // Following, the log may end in an error as the bottle goes:
            // only a bottle that still runs makes it a failure.
            Err(e) if args.follow && !still_runs(&backend, &name).await => {
                tracing::debug!("the proxy log ended with the bottle: {e}");
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
        match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // `egress | head`: the reader has all it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(Error::Stdout(e)),
        }
    }
    Ok(0)
}

async fn still_runs<B: Backend>(backend: &B, name: &str) -> bool {
    backend.list_active().await.is_ok_and(|active| {
        active
            .iter()
            .any(|b| b.name == name && b.state == "running")
    })
}
