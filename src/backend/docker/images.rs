//! Bring-up step: the agent image built and the proxy image pulled, when
//! `prepare` found them absent.

use std::time::Instant;

use super::bring_up::{BringUp, LaunchError};
use super::client::Engine;
use super::plan::AgentImageChoice;
use super::pull::ProxyPullError;

impl<E: Engine> BringUp<E> {
    /// The agent image is built and the proxy image pulled at once: neither
    /// needs the other. The first failure drops the other step.
    pub(super) async fn ensure_images(&self) -> Result<(), LaunchError> {
        futures_util::try_join!(
            self.ensure_agent_image(),
            self.ensure_proxy_image(),
            self.ensure_fence_image()
        )?;
        Ok(())
    }

    /// Builds the built-in image when only the fence needs it (the bottle
    /// runs its own image); when the agent runs it too, `ensure_agent_image`
    /// builds it.
    async fn ensure_fence_image(&self) -> Result<(), LaunchError> {
        let Some(claude_code_version) = &self.plan.fence_image_build else {
            return Ok(());
        };
        self.check_cancelled()?;
        let tag = &self.plan.fence_image;
        if self.engine.image_exists(tag).await? {
            return Ok(());
        }
        tokio::select! {
            built = self.engine.build_image(tag, claude_code_version, &self.printer) => Ok(built?),
            () = self.cancelled() => Err(LaunchError::Cancelled),
        }
    }

    async fn ensure_agent_image(&self) -> Result<(), LaunchError> {
        let AgentImageChoice::BuiltIn {
            tag,
            claude_code_version,
            present: false,
        } = &self.plan.image
        else {
            return Ok(());
        };
        self.check_cancelled()?;
        // Another session may have built it since `prepare`.
        if self.engine.image_exists(tag).await? {
            return Ok(());
        }
        tokio::select! {
            built = self.engine.build_image(tag, claude_code_version, &self.printer) => Ok(built?),
            () = self.cancelled() => Err(LaunchError::Cancelled),
        }
    }

    /// Pulls the proxy image when `prepare` did not find it. A pull creates
    /// no container or network, so an interrupted one leaves nothing to
    /// remove: it is simply dropped.
    async fn ensure_proxy_image(&self) -> Result<(), LaunchError> {
        if self.plan.proxy_image_present {
            return Ok(());
        }
        self.check_cancelled()?;
        let image = &self.plan.proxy_image;
        // Another session may have pulled it since `prepare`.
        if self.engine.image_exists(image).await? {
            return Ok(());
        }
        self.printer
            .status(format_args!("pulling the proxy image `{image}`"));
        let clock = Instant::now();
        tokio::select! {
            pulled = self.engine.pull_image(image, &self.printer) => {
                pulled.map_err(|err| match ProxyPullError::classify(image, err) {
                    Ok(pull) => LaunchError::ProxyPull(pull),
                    Err(daemon) => LaunchError::Engine(daemon),
                })?;
            }
            () = self.cancelled() => return Err(LaunchError::Cancelled),
        }
        self.printer.status(format_args!(
            "pulled the proxy image `{image}` in {:.1} s",
            clock.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}
