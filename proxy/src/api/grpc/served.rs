//! The RPCs of the `Dapr` service this sidecar serves.

/// The served RPCs whose request is a stream: held open for as long as the app keeps them, each
/// message bounded by the decoder, never by the time or pauses of a whole request.
pub(super) const STREAMING: &[&str] = &["SubscribeTopicEventsAlpha1", "SubscribeActorEventsAlpha1"];

/// The RPCs this sidecar serves, with the endpoint group and version `Configuration.spec.api`
/// rules name them by; the service's other RPCs answer `UNIMPLEMENTED`.
pub(super) const SERVED: &[(&str, &str, &str)] = &[
    ("InvokeService", "invoke", "v1"),
    ("GetState", "state", "v1"),
    ("GetBulkState", "state", "v1"),
    ("SaveState", "state", "v1"),
    ("DeleteState", "state", "v1"),
    ("DeleteBulkState", "state", "v1"),
    ("ExecuteStateTransaction", "state", "v1"),
    ("QueryStateAlpha1", "state", "v1alpha1"),
    ("PublishEvent", "publish", "v1"),
    ("BulkPublishEventAlpha1", "publish", "v1alpha1"),
    ("BulkPublishEvent", "publish", "v1"),
    ("SubscribeTopicEventsAlpha1", "subscribe", "v1alpha1"),
    ("GetSecret", "secrets", "v1"),
    ("GetBulkSecret", "secrets", "v1"),
    ("InvokeBinding", "bindings", "v1"),
    ("GetConfiguration", "configuration", "v1"),
    ("GetConfigurationAlpha1", "configuration", "v1alpha1"),
    ("SubscribeConfiguration", "configuration", "v1"),
    ("SubscribeConfigurationAlpha1", "configuration", "v1alpha1"),
    ("UnsubscribeConfiguration", "configuration", "v1"),
    (
        "UnsubscribeConfigurationAlpha1",
        "configuration",
        "v1alpha1",
    ),
    ("TryLockAlpha1", "lock", "v1alpha1"),
    ("UnlockAlpha1", "unlock", "v1alpha1"),
    ("GetMetadata", "metadata", "v1"),
    ("SetMetadata", "metadata", "v1"),
    ("Shutdown", "shutdown", "v1"),
    ("InvokeActor", "actors", "v1"),
    ("GetActorState", "actors", "v1"),
    ("ExecuteActorStateTransaction", "actors", "v1"),
    ("RegisterActorTimer", "actors", "v1"),
    ("UnregisterActorTimer", "actors", "v1"),
    ("RegisterActorReminder", "actors", "v1"),
    ("UnregisterActorReminder", "actors", "v1"),
    ("GetActorReminder", "actors", "v1"),
    ("SubscribeActorEventsAlpha1", "actors", "v1alpha1"),
    ("ScheduleJob", "jobs", "v1"),
    ("GetJob", "jobs", "v1"),
    ("DeleteJob", "jobs", "v1"),
    ("ScheduleJobAlpha1", "jobs", "v1alpha1"),
    ("GetJobAlpha1", "jobs", "v1alpha1"),
    ("DeleteJobAlpha1", "jobs", "v1alpha1"),
];
