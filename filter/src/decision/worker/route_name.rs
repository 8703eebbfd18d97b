//! What the worker asks the host about the current stream besides its headers, only when
//! the configuration needs it: the quickstart's requests make no such call.

use super::{Host, Level, Worker};
use crate::jose::verify::SignatureVerifier;

impl<H: Host, V: SignatureVerifier> Worker<H, V> {
    /// The Envoy route the current stream is on, when some rule names routes: Envoy's
    /// `xds.route_name` (the route chosen for the request; its older `route_name` is only
    /// set once the router has run, after this filter), else `route_name` (other hosts). A
    /// host with neither (or with a value that is not UTF-8) gives `None`, so those rules
    /// never match; that is logged once per worker.
    pub(super) fn route_name(&self) -> Option<String> {
        if !self.authenticator.needs_route_name {
            return None;
        }
        let name = self
            .host
            .property(&["xds", "route_name"])
            .or_else(|| self.host.property(&["route_name"]))
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if name.is_none() && !self.route_name_missing_logged.replace(true) {
            self.host.log(
                Level::Warn,
                format_args!(
                    "the host gives no route_name property: rules with 'route' match no request"
                ),
            );
        }
        name
    }
}
