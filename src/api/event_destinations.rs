//! `/v2/core/event_destinations`: create, list, retrieve, update, delete, disable, enable, ping.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::pagination;
use super::query::Query;
use super::request::{check_id_prefix, current_stripe_version, Ctx, JsonBody, PathId};
use super::validate::{finish_errors, nested, Fields};
use super::wire::{self, Include, INCLUDE_SECRET, INCLUDE_URL};
use super::AppState;
use crate::delivery::address::AddressPolicy;
use crate::delivery::sender::Sender;
use crate::domain::destination::{
    DestinationPatch, EventDestination, EventPayload, NewDestination, NewTarget, Status,
};
use crate::domain::event::{Family, RequestReason};
use crate::domain::Mode;

const PATH: &str = "/v2/core/event_destinations";
const MAX_TEXT: usize = 5000;
const MAX_URL: usize = 2048;
const MAX_ENABLED_EVENTS: usize = 500;
const EVENTS_FROM: &[&str] = &["@self", "@accounts", "self", "other_accounts"];

type ApiResult = Result<Json<Value>, ApiError>;

pub async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let idem = ctx.idempotency(format!("POST {PATH}"), &Value::Object(body.clone()));
    let (new, include) = parse_create(body, ctx.scope.mode, &state.policy)?;
    let d = state.store.create_destination(ctx.scope, idem, new).await?;
    Ok(Json(wire::event_destination(&d, include)))
}

pub async fn list(State(state): State<AppState>, ctx: Ctx, RawQuery(raw): RawQuery) -> ApiResult {
    let mut q = Query::parse(raw.as_deref());
    let req = pagination::parse(&mut q, PATH, |q| {
        let include = url_include(q);
        finish_errors(std::mem::take(q).finish())?;
        Ok(json!({"include": include}))
    })?;
    let include = Include::url_from(&strings(&req.params["include"]));
    let page = state
        .store
        .list_destinations(ctx.scope, req.cursor, req.limit)
        .await?;
    let data = page
        .items
        .iter()
        .map(|d| wire::event_destination(d, include))
        .collect();
    Ok(Json(pagination::envelope(PATH, data, &page, &req)))
}

pub async fn retrieve(
    State(state): State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let mut q = Query::parse(raw.as_deref());
    let include = Include::url_from(&url_include(&mut q));
    finish_errors(q.finish())?;
    check_id_prefix(&id, "ed_", "event destination")?;
    let d = state.store.get_destination(ctx.scope, id).await?;
    Ok(Json(wire::event_destination(&d, include)))
}

pub async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> ApiResult {
    check_id_prefix(&id, "ed_", "event destination")?;
    let idem = ctx.idempotency(format!("POST {PATH}/{id}"), &Value::Object(body.clone()));
    let current = state
        .store
        .get_destination(ctx.scope.clone(), id.clone())
        .await?;
    let (patch, include) = parse_update(body, &current, &state.policy)?;
    let d = state
        .store
        .update_destination(ctx.scope, idem, id, patch)
        .await?;
    Ok(Json(wire::event_destination(&d, include)))
}

pub async fn delete(State(state): State<AppState>, ctx: Ctx, PathId(id): PathId) -> ApiResult {
    check_id_prefix(&id, "ed_", "event destination")?;
    let idem = ctx.idempotency(format!("DELETE {PATH}/{id}"), &json!({}));
    let id = state.store.delete_destination(ctx.scope, idem, id).await?;
    Ok(Json(wire::deleted_destination(&id)))
}

pub async fn disable(state: State<AppState>, ctx: Ctx, id: PathId, body: JsonBody) -> ApiResult {
    set_status(state, ctx, id, body, Status::Disabled, "disable").await
}

pub async fn enable(state: State<AppState>, ctx: Ctx, id: PathId, body: JsonBody) -> ApiResult {
    set_status(state, ctx, id, body, Status::Enabled, "enable").await
}

async fn set_status(
    State(state): State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
    status: Status,
    action: &str,
) -> ApiResult {
    check_id_prefix(&id, "ed_", "event destination")?;
    let idem = ctx.idempotency(
        format!("POST {PATH}/{id}/{action}"),
        &Value::Object(body.clone()),
    );
    Fields::new(body).finish()?;
    let d = state
        .store
        .set_destination_status(ctx.scope, idem, id, status)
        .await?;
    Ok(Json(wire::event_destination(&d, Include::default())))
}

pub async fn ping(
    State(state): State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> ApiResult {
    check_id_prefix(&id, "ed_", "event destination")?;
    let idem = ctx.idempotency(
        format!("POST {PATH}/{id}/ping"),
        &Value::Object(body.clone()),
    );
    Fields::new(body).finish()?;
    let reason = RequestReason {
        id: ctx.request_id.clone(),
        idempotency_key: ctx.reason_idempotency_key(),
    };
    let event = state
        .store
        .ping_destination(ctx.scope.clone(), idem, id, reason)
        .await?;
    Ok(Json(wire::event(&event, ctx.context_of(&event))))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `include` on list, retrieve: only `webhook_endpoint.url` is includable.
fn url_include(q: &mut Query) -> Vec<String> {
    let include = q.list("include");
    for (i, item) in include.iter().enumerate() {
        if item != INCLUDE_URL {
            q.errors.push(super::error::FieldError {
                path: format!("include[{i}]"),
                message: format!(
                    "Unrecognized enum value '{item}', valid values are: {INCLUDE_URL}."
                ),
            });
        }
    }
    include
}

fn parse_include(f: &mut Fields, valid: &[&str]) -> Include {
    let v = f.take("include");
    let list = f.string_array("include", v, 2, 100).unwrap_or_default();
    for (i, item) in list.iter().enumerate() {
        if !valid.contains(&item.as_str()) {
            f.error(
                format!("include[{i}]"),
                format!(
                    "Unrecognized enum value '{item}', valid values are: {}.",
                    valid.join(", ")
                ),
            );
        }
    }
    Include::from_list(&list)
}

/// An event type name (`a.b`, lowercase, digits, `_`), or `*`.
pub fn valid_event_type(s: &str) -> bool {
    s == "*"
        || (s.len() <= 200
            && s.split('.').count() >= 2
            && s.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            }))
}

fn enabled_events(
    f: &mut Fields,
    v: Option<Value>,
    payload: Option<EventPayload>,
) -> Option<Vec<String>> {
    let events = f.string_array("enabled_events", v, MAX_ENABLED_EVENTS, 200)?;
    if events.is_empty() {
        f.error("enabled_events", "Must list at least one event type.");
        return None;
    }
    for (i, t) in events.iter().enumerate() {
        let path = format!("enabled_events[{i}]");
        if !valid_event_type(t) {
            f.error(path, format!("'{t}' is not a valid event type."));
            continue;
        }
        let family = (t != "*").then(|| Family::of_type(t));
        match (payload, family) {
            (Some(EventPayload::Thin), Some(Family::Snapshot)) => f.error(
                path,
                format!("'{t}' is a snapshot event type; thin destinations take v1.* and v2.* types."),
            ),
            (Some(EventPayload::Snapshot), Some(Family::Thin)) => f.error(
                path,
                format!("'{t}' is a thin event type; snapshot destinations take classic types such as customer.created."),
            ),
            _ => {}
        }
    }
    Some(events)
}

/// Characters RFC 3986 allows in a URL; anything else would be re-encoded on the way out.
fn rfc3986_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// True when the request target eventd sends (the parsed URL's path and query) is the one written.
fn sent_as_given(s: &str, u: &url::Url) -> bool {
    let after_scheme = s.find("://").map_or(s, |i| &s[i + 3..]);
    let written = after_scheme
        .find(['/', '?'])
        .map_or("", |i| &after_scheme[i..]);
    let mut sent = u.path().to_owned();
    if let Some(q) = u.query() {
        sent.push('?');
        sent.push_str(q);
    }
    written.is_empty()
        || written == sent
        || (written.starts_with('?') && sent == format!("/{written}"))
}

/// An absolute http(s) URL with a host, no user info, no fragment; https in live mode; a literal
/// address only when the address policy permits it.
fn webhook_url(
    f: &mut Fields,
    path: &str,
    v: Option<Value>,
    mode: Mode,
    policy: &AddressPolicy,
) -> Option<String> {
    let s = f.string(path, v, MAX_URL)?;
    let problem = match url::Url::parse(&s) {
        _ if s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Some("Must not contain spaces or control characters.")
        }
        Err(_) => Some("Must be an absolute URL such as https://example.com/webhook."),
        Ok(u) if u.scheme() != "http" && u.scheme() != "https" => {
            Some("Must be an http or https URL.")
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("Must have a host."),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            Some("Must not contain user info.")
        }
        Ok(_) if s.contains('#') => Some("Must not contain a #fragment."),
        Ok(_) if !s.chars().all(rfc3986_char) => {
            Some("Must contain only URL characters; percent-encode anything else.")
        }
        Ok(u) if !sent_as_given(&s, &u) => Some(
            "Its path or query would not be sent exactly as given; percent-encode characters such as ' in it.",
        ),
        Ok(u) if mode == Mode::Live && u.scheme() != "https" => {
            Some("Live mode requires an https URL.")
        }
        Ok(_) if !Sender::literal_host_permitted(policy, &s) => Some(
            "Targets a loopback, private, link-local or otherwise non-public address; an operator can allow ranges with EVENTD_ALLOW_PRIVATE_TARGETS.",
        ),
        Ok(_) => None,
    };
    match problem {
        Some(message) => {
            f.error(path, message);
            None
        }
        None => Some(s),
    }
}

fn valid_api_version(s: &str) -> bool {
    let (date, name) = s.split_once('.').unwrap_or((s, "x"));
    date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_create(
    body: Map<String, Value>,
    mode: Mode,
    policy: &AddressPolicy,
) -> Result<(NewDestination, Include), ApiError> {
    let mut f = Fields::new(body);
    let v = f.required("name");
    let name = f.non_empty_string("name", v, MAX_TEXT);
    let v = f.take("description");
    let description = f.string("description", v, MAX_TEXT).unwrap_or_default();
    let v = f.required("type");
    let kind = f.enumeration(
        "type",
        v,
        &["webhook_endpoint", "amazon_eventbridge", "azure_event_grid"],
    );
    let v = f.required("event_payload");
    let payload = match f.enumeration("event_payload", v, &["snapshot", "thin"]) {
        Some("thin") => Some(EventPayload::Thin),
        Some(_) => Some(EventPayload::Snapshot),
        None => None,
    };
    let v = f.required("enabled_events");
    let events = enabled_events(&mut f, v, payload);
    let events_from = parse_events_from(&mut f);
    let include = parse_include(&mut f, &[INCLUDE_SECRET, INCLUDE_URL]);
    let v = f.take("metadata");
    let metadata: BTreeMap<String, String> = f
        .metadata(v, false)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let v = f.take("snapshot_api_version");
    let snapshot_api_version = f.string("snapshot_api_version", v, 100);
    if let Some(s) = &snapshot_api_version {
        if payload == Some(EventPayload::Thin) {
            f.error(
                "snapshot_api_version",
                "Only snapshot destinations take a snapshot_api_version.",
            );
        } else if !valid_api_version(s) {
            f.error(
                "snapshot_api_version",
                "Must be an API version such as 2025-07-30.basil.",
            );
        }
    }
    let target = parse_target(&mut f, kind, mode, policy);
    f.finish()?;
    let (Some(name), Some(event_payload), Some(enabled_events), Some(events_from), Some(target)) =
        (name, payload, events, events_from, target)
    else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validation passed with a missing field"
        )));
    };
    let snapshot_api_version = match event_payload {
        EventPayload::Thin => None,
        EventPayload::Snapshot => snapshot_api_version.or_else(current_stripe_version),
    };
    let new = NewDestination {
        name,
        description,
        target,
        event_payload,
        enabled_events,
        events_from,
        metadata,
        snapshot_api_version,
    };
    Ok((new, include))
}

fn parse_events_from(f: &mut Fields) -> Option<Vec<String>> {
    let Some(v) = f.take("events_from") else {
        return Some(vec!["@self".to_owned()]);
    };
    let list = f.string_array("events_from", Some(v), EVENTS_FROM.len(), 64)?;
    if list.is_empty() {
        f.error("events_from", "Must list at least one scope.");
        return None;
    }
    let before = f.errors.len();
    for (i, s) in list.iter().enumerate() {
        if !EVENTS_FROM.contains(&s.as_str()) {
            f.error(
                format!("events_from[{i}]"),
                format!(
                    "Unrecognized enum value '{s}', valid values are: {}.",
                    EVENTS_FROM.join(", ")
                ),
            );
        }
    }
    (f.errors.len() == before).then_some(list)
}

fn parse_target(
    f: &mut Fields,
    kind: Option<&str>,
    mode: Mode,
    policy: &AddressPolicy,
) -> Option<NewTarget> {
    let webhook = f.take("webhook_endpoint");
    let bridge = f.take("amazon_eventbridge");
    if f.take("azure_event_grid").is_some() || kind == Some("azure_event_grid") {
        f.error(
            "type",
            "azure_event_grid destinations are not supported by eventd.",
        );
    }
    for (field, present, wanted) in [
        ("webhook_endpoint", webhook.is_some(), "webhook_endpoint"),
        ("amazon_eventbridge", bridge.is_some(), "amazon_eventbridge"),
    ] {
        if present && kind.is_some_and(|k| k != wanted) {
            f.error(field, format!("Only allowed when type is {wanted}."));
        }
        if !present && kind == Some(wanted) {
            f.error(field, format!("Required when type is {wanted}."));
        }
    }
    match kind? {
        "webhook_endpoint" => {
            let mut sub = Fields::new(f.object("webhook_endpoint", webhook)?);
            let v = sub.required("url");
            let url = webhook_url(&mut sub, "url", v, mode, policy);
            nested(f, "webhook_endpoint", sub);
            Some(NewTarget::WebhookEndpoint { url: url? })
        }
        "amazon_eventbridge" => {
            let mut sub = Fields::new(f.object("amazon_eventbridge", bridge)?);
            let v = sub.required("aws_account_id");
            let account = sub.string("aws_account_id", v, 12);
            if account
                .as_ref()
                .is_some_and(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
            {
                sub.error("aws_account_id", "Must be a 12-digit AWS account id.");
            }
            let v = sub.required("aws_region");
            let region = sub.string("aws_region", v, 32);
            if region.as_ref().is_some_and(|r| !valid_aws_region(r)) {
                sub.error("aws_region", "Must be an AWS region such as us-east-1.");
            }
            let ok = sub.errors.is_empty();
            nested(f, "amazon_eventbridge", sub);
            ok.then_some(NewTarget::AmazonEventbridge {
                aws_account_id: account?,
                aws_region: region?,
            })
        }
        _ => None,
    }
}

fn valid_aws_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn parse_update(
    body: Map<String, Value>,
    current: &EventDestination,
    policy: &AddressPolicy,
) -> Result<(DestinationPatch, Include), ApiError> {
    let mut f = Fields::new(body);
    for immutable in [
        "type",
        "event_payload",
        "events_from",
        "snapshot_api_version",
        "amazon_eventbridge",
        "azure_event_grid",
    ] {
        if f.has(immutable) {
            f.take(immutable);
            f.error(immutable, "Cannot be changed after creation.");
        }
    }
    let v = f.take_set("name");
    let name = f.non_empty_string("name", v, MAX_TEXT);
    let v = f.take_set("description");
    let description = f.string("description", v, MAX_TEXT);
    let enabled = match f.take_set("enabled_events") {
        Some(v) => enabled_events(&mut f, Some(v), Some(current.event_payload)),
        None => None,
    };
    let v = f.take_set("metadata");
    let metadata = f.metadata(v, true);
    if let Some(m) = &metadata {
        let mut keys: std::collections::BTreeSet<&String> = current.metadata.keys().collect();
        for (k, v) in m {
            match v {
                Some(_) => keys.insert(k),
                None => keys.remove(k),
            };
        }
        if keys.len() > super::validate::MAX_METADATA_KEYS {
            f.error(
                "metadata",
                format!(
                    "Would have more than {} keys.",
                    super::validate::MAX_METADATA_KEYS
                ),
            );
        }
    }
    let include = parse_include(&mut f, &[INCLUDE_URL]);
    let webhook_url = match f.take_set("webhook_endpoint") {
        Some(_) if !current.is_webhook() => {
            f.error(
                "webhook_endpoint",
                "Only webhook_endpoint destinations have a URL.",
            );
            None
        }
        Some(v) => {
            let mut sub = Fields::new(f.object("webhook_endpoint", Some(v)).unwrap_or_default());
            let v = sub.required("url");
            let url = webhook_url(&mut sub, "url", v, current.mode, policy);
            nested(&mut f, "webhook_endpoint", sub);
            url
        }
        None => None,
    };
    f.finish()?;
    let patch = DestinationPatch {
        name,
        description,
        enabled_events: enabled,
        metadata,
        webhook_url,
    };
    Ok((patch, include))
}
