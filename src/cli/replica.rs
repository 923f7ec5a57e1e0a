//! The flags `tmc dev` and `tmc serve` share, as one clap group flattened
//! into both: the controllers' ([`ControllerArgs`]) and the API server's
//! limits ([`ApiLimitArgs`]). A flag added here reaches both commands.

use super::api_limits::ApiLimitArgs;
use super::controllers::ControllerArgs;

/// The controller and API limit flags of a replica.
#[derive(clap::Args, Clone, Debug)]
pub struct ReplicaArgs {
    #[command(flatten)]
    pub controllers: ControllerArgs,
    #[command(flatten)]
    pub api_limits: ApiLimitArgs,
}
