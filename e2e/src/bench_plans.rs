//! The scenarios of `courier-bench --mode produce`, in the order they run: each path, its
//! connections, and whether it also runs at the fixed rate.

/// One way of sending, as the run plans it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    ProxySingle,
    ProxyBatch,
    Client,
    Direct,
    BridgeSingle,
    BridgeBatch,
    /// Single events from `wrk` (an external load generator) instead of courier-bench's own.
    Wrk,
    /// Single events to `courier-http-floor`: the proxy's HTTP server with no event path.
    Floor,
}

/// What a scenario's events look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Events {
    /// Unique ids, 1,024 partition keys, varied data ([`crate::bench_targets::realistic_event`]).
    Realistic,
    /// One data shape, a 200-byte string ([`crate::bench_targets::event`]): the easy case.
    Fixed,
}

/// One scenario of the run.
pub(crate) struct Plan {
    pub(crate) key: &'static str,
    /// The scenario's name in the report.
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Proxy processes the scenario sends to.
    pub(crate) proxies: usize,
    /// Also run at the fixed rate, not only at the maximum.
    pub(crate) fixed_rate: bool,
    /// Connections (requests in flight): 0 takes `--concurrency` for single events and
    /// `--batch-concurrency` for batches.
    pub(crate) connections: usize,
    pub(crate) events: Events,
}

const fn plan(
    key: &'static str,
    name: &'static str,
    kind: Kind,
    proxies: usize,
    fixed_rate: bool,
    connections: usize,
) -> Plan {
    Plan {
        key,
        name,
        kind,
        proxies,
        fixed_rate,
        connections,
        events: Events::Realistic,
    }
}

/// The scenario named by `key`.
pub(crate) fn plan_name(key: &str) -> &'static str {
    PLANS.iter().find(|p| p.key == key).map_or("", |p| p.name)
}

/// The scenarios, in the order they run; [`crate::bench_goals`] judges them by key.
pub(crate) const PLANS: [Plan; 17] = [
    plan(
        "proxy-single",
        "proxy, single events, 256 connections",
        Kind::ProxySingle,
        1,
        true,
        256,
    ),
    // The same requests to the proxy's HTTP server with nothing behind it, right after the
    // proxy's: what a request costs on this machine before the event path.
    plan(
        "floor-single",
        "HTTP floor (no event path), single events, 256 connections",
        Kind::Floor,
        0,
        true,
        256,
    ),
    plan(
        "wrk-single",
        "wrk → proxy, single events, 256 connections",
        Kind::Wrk,
        1,
        false,
        256,
    ),
    plan(
        "proxy-single-1k",
        "proxy, single events, 1,024 connections",
        Kind::ProxySingle,
        1,
        false,
        1024,
    ),
    plan(
        "wrk-single-1k",
        "wrk → proxy, single events, 1,024 connections",
        Kind::Wrk,
        1,
        false,
        1024,
    ),
    plan(
        "proxy-single-4k",
        "proxy, single events, 4,096 connections",
        Kind::ProxySingle,
        1,
        false,
        4096,
    ),
    plan(
        "wrk-single-4k",
        "wrk → proxy, single events, 4,096 connections",
        Kind::Wrk,
        1,
        false,
        4096,
    ),
    Plan {
        events: Events::Fixed,
        ..plan(
            "proxy-single-easy",
            "proxy, single events of one shape, 256 connections",
            Kind::ProxySingle,
            1,
            false,
            256,
        )
    },
    plan(
        "proxy-batch",
        "proxy, batched POSTs",
        Kind::ProxyBatch,
        1,
        true,
        0,
    ),
    // As many events in flight as the direct producer is given (64 × 100 against 10,000
    // records): the batched figure at its best concurrency, as the single-event rows are.
    plan(
        "proxy-batch-64",
        "proxy, batched POSTs, 64 in flight",
        Kind::ProxyBatch,
        1,
        false,
        64,
    ),
    plan(
        "client",
        "courier::Client (batching)",
        Kind::Client,
        1,
        true,
        0,
    ),
    plan(
        "direct",
        "direct rdkafka producer",
        Kind::Direct,
        0,
        true,
        0,
    ),
    plan(
        "bridge-single",
        "Strimzi bridge, single records",
        Kind::BridgeSingle,
        0,
        true,
        0,
    ),
    plan(
        "bridge-batch",
        "Strimzi bridge, batched records",
        Kind::BridgeBatch,
        0,
        true,
        0,
    ),
    plan(
        "proxy2-single",
        "2 proxies, single events, 1,024 connections",
        Kind::ProxySingle,
        2,
        false,
        1024,
    ),
    plan(
        "proxy2-batch",
        "2 proxies, batched POSTs",
        Kind::ProxyBatch,
        2,
        false,
        0,
    ),
    Plan {
        events: Events::Fixed,
        ..plan(
            "proxy-batch-easy",
            "proxy, batched POSTs of one shape",
            Kind::ProxyBatch,
            1,
            false,
            0,
        )
    },
];
