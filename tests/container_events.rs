//! GetContainerEvents through the real daemon: every subscriber sees
//! CREATED, STARTED, STOPPED, DELETED in order with the pod's and the
//! containers' statuses; an exit the runtime only observes yields STOPPED
//! too; a subscriber that never reads gets its stream ended with
//! RESOURCE_EXHAUSTED while the runtime carries on.

mod common;

use std::time::Duration;

use common::containers::*;
use k8s_cri::v1::*;
use tonic::Streaming;

use common::pods::RuntimeClient;

/// A subscriber on its own connection (a client that does not read holds
/// its connection's flow-control window, not others').
struct Sub {
    _client: RuntimeClient,
    stream: Streaming<ContainerEventResponse>,
}

async fn subscribe(env: &Env) -> Sub {
    let mut client = env.daemon.runtime_client().await;
    let stream = client
        .get_container_events(GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();
    Sub {
        _client: client,
        stream,
    }
}

impl Sub {
    async fn next(&mut self) -> ContainerEventResponse {
        tokio::time::timeout(Duration::from_secs(30), self.stream.message())
            .await
            .expect("an event within 30s")
            .expect("event stream failed")
            .expect("event stream ended")
    }

    /// The next event, checked to be `kind` for container `id` of `pod`;
    /// returns `id`'s status in it (None if it is not listed).
    async fn expect(
        &mut self,
        kind: ContainerEventType,
        id: &str,
        pod: &str,
    ) -> (ContainerEventResponse, Option<ContainerStatus>) {
        let ev = self.next().await;
        assert_eq!(
            (ev.container_event_type, ev.container_id.as_str()),
            (kind as i32, id),
            "unexpected event {ev:?}"
        );
        assert!(ev.created_at > 0, "{ev:?}");
        let ps = ev.pod_sandbox_status.as_ref().expect("pod status");
        assert_eq!(ps.id, pod);
        assert_eq!(ps.state, PodSandboxState::SandboxReady as i32);
        assert!(ps.metadata.is_some());
        let st = ev.containers_statuses.iter().find(|s| s.id == id).cloned();
        (ev, st)
    }
}

#[tokio::test]
async fn two_subscribers_see_a_full_lifecycle_in_order() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("events").await;
    let mut subs = [subscribe(&env).await, subscribe(&env).await];

    // A sibling container, listed in every event of the pod.
    let sib = env.create_ok(&pod, &pcfg, sh("sib", &bb, "true")).await;
    for s in &mut subs {
        s.expect(ContainerEventType::ContainerCreatedEvent, &sib, &pod)
            .await;
    }

    let id = env
        .create_ok(&pod, &pcfg, sh("c1", &bb, "sleep 1000"))
        .await;
    let mut times = Vec::new();
    for s in &mut subs {
        let (ev, st) = s
            .expect(ContainerEventType::ContainerCreatedEvent, &id, &pod)
            .await;
        let st = st.expect("the container's status");
        assert_eq!(st.state, ContainerState::ContainerCreated as i32);
        assert_eq!(st.metadata.as_ref().map(|m| m.name.as_str()), Some("c1"));
        assert!(ev.containers_statuses.iter().any(|s| s.id == sib));
        times.push(ev.created_at);
    }
    // One event, fanned out: the same time for both.
    assert_eq!(times[0], times[1]);

    env.start_ok(&id).await;
    for s in &mut subs {
        let (_, st) = s
            .expect(ContainerEventType::ContainerStartedEvent, &id, &pod)
            .await;
        let st = st.expect("the container's status");
        assert_eq!(st.state, ContainerState::ContainerRunning as i32);
        assert!(st.started_at > 0);
    }

    env.stop(&id, 0).await.expect("StopContainer");
    for s in &mut subs {
        let (ev, st) = s
            .expect(ContainerEventType::ContainerStoppedEvent, &id, &pod)
            .await;
        let st = st.expect("the container's status");
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert_eq!(st.exit_code, 137, "{st:?}");
        assert!(st.finished_at >= st.started_at);
        // As ContainerStatus returns it.
        assert_eq!(st, env.status(&id).await);
        assert!(ev.created_at >= times[0]);
    }
    // Stopping again, and status refreshes, announce nothing more.
    env.stop(&id, 0).await.expect("StopContainer");
    env.status(&id).await;

    env.remove(&id).await.expect("RemoveContainer");
    for s in &mut subs {
        let (ev, st) = s
            .expect(ContainerEventType::ContainerDeletedEvent, &id, &pod)
            .await;
        assert!(st.is_none(), "a deleted container is not listed: {ev:?}");
        assert!(ev.containers_statuses.iter().any(|s| s.id == sib));
    }

    // Removed with its pod: the running one is stopped then deleted, the
    // one that never ran only deleted.
    let c2 = env.run(&pod, &pcfg, sh("c2", &bb, "sleep 1000")).await;
    for s in &mut subs {
        s.expect(ContainerEventType::ContainerCreatedEvent, &c2, &pod)
            .await;
        s.expect(ContainerEventType::ContainerStartedEvent, &c2, &pod)
            .await;
    }
    let mut rt = env.rt.clone();
    common::pods::remove_pod(&mut rt, &pod)
        .await
        .expect("RemovePodSandbox");
    for s in &mut subs {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let ev = s.next().await;
            seen.push((ev.container_event_type, ev.container_id));
        }
        seen.sort();
        let mut want = vec![
            (ContainerEventType::ContainerStoppedEvent as i32, c2.clone()),
            (ContainerEventType::ContainerDeletedEvent as i32, c2.clone()),
            (
                ContainerEventType::ContainerDeletedEvent as i32,
                sib.clone(),
            ),
        ];
        want.sort();
        assert_eq!(seen, want);
    }
}

// Multi-threaded: the client's connections are served while the test
// thread waits for the daemon to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_of_its_own_is_a_stopped_event() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("selfexit").await;
    let mut sub = subscribe(&env).await;
    let id = env.run(&pod, &pcfg, sh("c", &bb, "sleep 1; exit 3")).await;
    sub.expect(ContainerEventType::ContainerCreatedEvent, &id, &pod)
        .await;
    sub.expect(ContainerEventType::ContainerStartedEvent, &id, &pod)
        .await;
    // Nobody asks for the status: the runtime notices the exit itself.
    let (_, st) = sub
        .expect(ContainerEventType::ContainerStoppedEvent, &id, &pod)
        .await;
    let st = st.expect("the container's status");
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 3);
    assert_eq!(st.reason, "Error");
    // Later status calls and a stop do not repeat it.
    env.status(&id).await;
    env.stop(&id, 0).await.expect("StopContainer");
    env.remove(&id).await.expect("RemoveContainer");
    sub.expect(ContainerEventType::ContainerDeletedEvent, &id, &pod)
        .await;

    // An open subscription does not hold up a graceful shutdown (10 s
    // grace): the stream ends cleanly.
    let t = std::time::Instant::now();
    assert!(env.daemon.stop().success());
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "shutdown waited {:?} for the event stream",
        t.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(10), sub.stream.message())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_cut_off_and_blocks_nothing() {
    let mut env = Env::new("[runtime]\nevent_buffer = 16").await;
    let bb = env.busybox.clone();
    // Big events (~240 KiB of pod annotations each) fill the transport's
    // buffers after a few; the rest pile up in the subscriber's 16 slots.
    let mut pcfg = env.pod_config("flood");
    for i in 0..4 {
        pcfg.annotations
            .insert(format!("crius.test/big{i}"), "x".repeat(60 << 10));
    }
    let pod = common::pods::run_pod_ok(&mut env.rt, pcfg.clone()).await;
    let mut slow = subscribe(&env).await;
    let mut reader = subscribe(&env).await;

    let mut want = Vec::new();
    for i in 0..40 {
        let id = env
            .create_ok(&pod, &pcfg, sh(&format!("c{i}"), &bb, "true"))
            .await;
        env.remove(&id).await.expect("RemoveContainer");
        // The reading subscriber keeps up.
        reader
            .expect(ContainerEventType::ContainerCreatedEvent, &id, &pod)
            .await;
        reader
            .expect(ContainerEventType::ContainerDeletedEvent, &id, &pod)
            .await;
        want.push((ContainerEventType::ContainerCreatedEvent as i32, id.clone()));
        want.push((ContainerEventType::ContainerDeletedEvent as i32, id));
    }

    // The runtime carries on, and a new subscriber is served.
    let mut late = subscribe(&env).await;
    let id = env.run(&pod, &pcfg, sh("after", &bb, "sleep 1000")).await;
    late.expect(ContainerEventType::ContainerCreatedEvent, &id, &pod)
        .await;
    late.expect(ContainerEventType::ContainerStartedEvent, &id, &pod)
        .await;
    assert_eq!(env.list(None).await.len(), 1);

    // The slow subscriber gets what was buffered, in order and without
    // gaps, then an error saying it fell behind.
    let mut got = Vec::new();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(30), slow.stream.message())
            .await
            .expect("the slow stream answers")
        {
            Ok(Some(ev)) => got.push((ev.container_event_type, ev.container_id)),
            Ok(None) => panic!("the slow stream ended without an error after {got:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("behind"), "{err:?}");
    assert!(got.len() < want.len(), "nothing was lost: {}", got.len());
    assert_eq!(got, want[..got.len()], "events skipped before the error");
    env.stop(&id, 0).await.expect("StopContainer");
    env.remove(&id).await.expect("RemoveContainer");
}
