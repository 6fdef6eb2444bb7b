//! Container lifecycle events (CRI GetContainerEvents, kubelet's evented
//! PLEG): the ContainerManager emits one small event per state change on a
//! bounded broadcast channel; subscribers (the API layer) turn them into
//! CRI messages. Sending never waits: a subscriber that falls more than the
//! channel's capacity behind is told so (`RecvError::Lagged`) on its next
//! receive instead of slowing the runtime down.

use tokio::sync::broadcast;

use super::container::{ContainerRecord, ContainerState};
use crate::id::{ContainerId, PodSandboxId};
use crate::monitor::now_ns;

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// CreateContainer succeeded.
    Created,
    /// StartContainer succeeded (or a restart found it running).
    Started,
    /// Its exit was recorded: the process exited on its own, was stopped,
    /// or its start failed. Once per container.
    Stopped,
    /// RemoveContainer (or RemovePodSandbox) removed it.
    Deleted,
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub kind: EventKind,
    pub container_id: ContainerId,
    pub pod_id: PodSandboxId,
    /// When the runtime saw it, ns since the epoch.
    pub time_ns: i64,
}

/// The sending side, owned by the ContainerManager.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<ContainerEvent>,
}

impl Events {
    /// `capacity`: how many events a subscriber may fall behind by (≥ 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.tx.subscribe()
    }

    /// Sends an event; never waits (no subscriber: dropped).
    pub fn emit(&self, kind: EventKind, container_id: &ContainerId, pod_id: &PodSandboxId) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(ContainerEvent {
            kind,
            container_id: container_id.clone(),
            pod_id: pod_id.clone(),
            time_ns: now_ns(),
        });
    }

    /// Emits what a record going from state `old` (None: new record) to
    /// `new`'s state means, if anything.
    pub fn changed(&self, old: Option<ContainerState>, new: &ContainerRecord) {
        if let Some(kind) = transition(old, new.state) {
            self.emit(kind, &new.id, &new.pod_id);
        }
    }
}

/// The event of a state change. Running → Unknown (the monitor vanished)
/// is none: the Unknown container is stopped later, which is.
pub fn transition(old: Option<ContainerState>, new: ContainerState) -> Option<EventKind> {
    use ContainerState::{Created, Exited, Running};
    match (old, new) {
        (None, Created) => Some(EventKind::Created),
        (Some(Created), Running) => Some(EventKind::Started),
        (Some(o), Exited) if o != Exited => Some(EventKind::Stopped),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerState::{Created, Exited, Running, Unknown};

    #[test]
    fn transitions() {
        assert_eq!(transition(None, Created), Some(EventKind::Created));
        assert_eq!(transition(Some(Created), Running), Some(EventKind::Started));
        assert_eq!(transition(Some(Running), Exited), Some(EventKind::Stopped));
        assert_eq!(transition(Some(Created), Exited), Some(EventKind::Stopped));
        assert_eq!(transition(Some(Unknown), Exited), Some(EventKind::Stopped));
        // Refreshes and resource updates rewrite a record unchanged.
        assert_eq!(transition(Some(Exited), Exited), None);
        assert_eq!(transition(Some(Running), Running), None);
        assert_eq!(transition(Some(Created), Created), None);
        assert_eq!(transition(Some(Running), Unknown), None);
    }

    fn ids() -> (ContainerId, PodSandboxId) {
        let c = ContainerId::random().expect("random id");
        let p = PodSandboxId::parse(&"a".repeat(64)).expect("pod id");
        (c, p)
    }

    #[tokio::test]
    async fn subscribers_see_events_in_order_and_laggards_are_told() {
        let events = Events::new(4);
        let (c, p) = ids();
        events.emit(EventKind::Created, &c, &p); // nobody listens: dropped
        let mut a = events.subscribe();
        let mut b = events.subscribe();
        for k in [EventKind::Created, EventKind::Started, EventKind::Stopped] {
            events.emit(k, &c, &p);
        }
        for k in [EventKind::Created, EventKind::Started, EventKind::Stopped] {
            let e = a.recv().await.expect("event");
            assert_eq!((e.kind, &e.container_id, &e.pod_id), (k, &c, &p));
        }
        // b never read: 3 + 3 more overflow its 4 slots.
        for _ in 0..3 {
            events.emit(EventKind::Deleted, &c, &p);
        }
        assert!(matches!(
            b.recv().await,
            Err(broadcast::error::RecvError::Lagged(2))
        ));
        assert_eq!(a.recv().await.map(|e| e.kind), Ok(EventKind::Deleted));
    }
}
