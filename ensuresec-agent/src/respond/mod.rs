//! Response: the engine's decisions, of every layer, grouped into incidents
//! per storefront and kind, with a lifecycle (open, mitigating, resolved
//! after a quiet period). Follows the decisions; never writes the maps.

pub mod incidents;
