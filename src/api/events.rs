//! GetContainerEvents. One pump task (started by the first subscriber)
//! receives the ContainerManager's domain events and turns each, right
//! away and once, into a `ContainerEventResponse` carrying the pod's status
//! and its containers' statuses as PodSandboxStatus and ContainerStatus
//! build them; it broadcasts the response to every subscriber through a
//! bounded channel (`runtime.event_buffer`). Nothing waits for a
//! subscriber: one that falls behind by more than the buffer finds its
//! stream ended with RESOURCE_EXHAUSTED on its next read, never a silent
//! gap (kubelet then relists).

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::Status;

use super::Cri;
use super::container::cri_status;
use super::pod::sandbox_status;
use crate::runtime::container::ContainerFilter;
use crate::runtime::events::{ContainerEvent, EventKind};

/// What the pump broadcasts: an event, or `Lost(n)` when the pump itself
/// fell `n` domain events behind (every subscriber's stream then ends).
#[derive(Debug, Clone)]
pub(crate) enum Published {
    Event(Arc<cri::ContainerEventResponse>),
    Lost(u64),
    /// The daemon is shutting down: streams end (OK), so open
    /// subscriptions do not hold up the graceful shutdown.
    Closing,
}

pub(crate) type EventHub = broadcast::Sender<Published>;

pub(super) type EventStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

fn kind_out(k: EventKind) -> i32 {
    (match k {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }) as i32
}

impl Cri {
    /// The pod's status (None once the pod is gone) and its containers'
    /// statuses, as PodSandboxStatus and ContainerStatus return them.
    pub(super) async fn pod_and_container_statuses(
        &self,
        pod_id: &str,
    ) -> (Option<cri::PodSandboxStatus>, Vec<cri::ContainerStatus>) {
        let pod = match self.sandboxes.get(pod_id) {
            Ok(p) => p.as_ref().map(sandbox_status),
            Err(e) => {
                tracing::warn!(pod = pod_id, error = %e, "pod status for a container event");
                None
            }
        };
        let filter = ContainerFilter {
            pod_id: Some(pod_id.to_owned()),
            ..Default::default()
        };
        let containers = match self.containers.list(&filter).await {
            Ok(recs) => recs.iter().map(cri_status).collect(),
            Err(e) => {
                tracing::warn!(pod = pod_id, error = %e, "container statuses for a container event");
                Vec::new()
            }
        };
        (pod, containers)
    }

    async fn event_response(&self, ev: &ContainerEvent) -> cri::ContainerEventResponse {
        let (pod_sandbox_status, containers_statuses) =
            self.pod_and_container_statuses(ev.pod_id.as_str()).await;
        cri::ContainerEventResponse {
            container_id: ev.container_id.to_string(),
            container_event_type: kind_out(ev.kind),
            created_at: ev.time_ns,
            pod_sandbox_status,
            containers_statuses,
        }
    }

    /// The hub, with its pump started on first use.
    fn event_hub(&self) -> &EventHub {
        self.events.get_or_init(|| {
            let (hub, _) = broadcast::channel(self.config.runtime.event_buffer.max(1));
            // Subscribed before the first caller's stream exists: it misses
            // nothing that happens after its call.
            let mut domain = self.containers.subscribe();
            let (me, out) = (self.clone(), hub.clone());
            tokio::spawn(async move {
                loop {
                    match domain.recv().await {
                        Ok(ev) => {
                            if out.receiver_count() > 0 {
                                let resp = me.event_response(&ev).await;
                                let _ = out.send(Published::Event(Arc::new(resp)));
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(lost = n, "container event pump fell behind");
                            let _ = out.send(Published::Lost(n));
                        }
                        Err(RecvError::Closed) => break,
                    }
                }
            });
            hub
        })
    }

    /// Ends every open GetContainerEvents stream (at shutdown).
    pub(crate) fn close_events(&self) {
        if let Some(hub) = self.events.get() {
            let _ = hub.send(Published::Closing);
        }
    }

    /// GetContainerEvents: the events from now on, until the client goes
    /// away or falls behind.
    pub(super) fn container_events(&self) -> EventStream {
        let rx = self.event_hub().subscribe();
        let capacity = self.config.runtime.event_buffer;
        Box::pin(futures_util::stream::unfold(
            Some(rx),
            move |rx| async move {
                let mut rx = rx?;
                let overflow = |n: u64, whose: &str| {
                    Status::resource_exhausted(format!(
                        "GetContainerEvents: {whose} fell {n} events behind (runtime.event_buffer \
                     = {capacity}); events were lost, relist and subscribe again"
                    ))
                };
                match rx.recv().await {
                    Ok(Published::Event(ev)) => Some((Ok(ev.as_ref().clone()), Some(rx))),
                    Ok(Published::Lost(n)) => {
                        Some((Err(overflow(n, "the runtime's event pump")), None))
                    }
                    Err(RecvError::Lagged(n)) => Some((Err(overflow(n, "this subscriber")), None)),
                    Ok(Published::Closing) | Err(RecvError::Closed) => None,
                }
            },
        ))
    }
}
