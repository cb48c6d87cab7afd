//! `/v2/core/events`: list and retrieve thin events; publish events (an eventd extension);
//! `/v1/events/{id}`: retrieve a published snapshot event.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::event_destinations::valid_event_type;
use super::pagination;
use super::query::Query;
use super::request::{check_id_prefix, Ctx, JsonBody, PathId};
use super::validate::{finish_errors, nested, Fields};
use super::wire;
use super::AppState;
use crate::domain::event::{Family, NewEvent, RelatedObject, RequestReason, PING_TYPE};
use crate::store::EventFilter;

const PATH: &str = "/v2/core/events";
const MAX_TYPES: usize = 20;

type ApiResult = Result<Json<Value>, ApiError>;

pub async fn list(State(state): State<AppState>, ctx: Ctx, RawQuery(raw): RawQuery) -> ApiResult {
    let mut q = Query::parse(raw.as_deref());
    let req = pagination::parse(&mut q, PATH, |q| {
        let params = parse_filter(q);
        finish_errors(std::mem::take(q).finish())?;
        Ok(params)
    })?;
    let filter = filter_from(&req.params);
    let page = state
        .store
        .list_events(ctx.scope.clone(), filter, req.cursor, req.limit)
        .await?;
    let data = page
        .items
        .iter()
        .map(|e| wire::event(e, ctx.context_of(e)))
        .collect();
    Ok(Json(pagination::envelope(PATH, data, &page, &req)))
}

/// Parses the list filters into the JSON that page tokens carry.
fn parse_filter(q: &mut Query) -> Value {
    let mut out = Map::new();
    if let Some(object_id) = q.scalar("object_id") {
        out.insert("object_id".into(), json!(object_id));
    }
    let types = q.list("types");
    if types.len() > MAX_TYPES {
        q.errors.push(field_error(
            "types",
            format!("Must have at most {MAX_TYPES} items."),
        ));
    }
    for (i, t) in types.iter().enumerate() {
        if !valid_event_type(t) || t == "*" {
            q.errors.push(field_error(
                &format!("types[{i}]"),
                format!("'{t}' is not a valid event type."),
            ));
        }
    }
    if !types.is_empty() {
        out.insert("types".into(), json!(types));
    }
    let created = q.map("created");
    let mut bounds = Map::new();
    for (op, value) in created {
        if !["gt", "gte", "lt", "lte"].contains(&op.as_str()) {
            q.errors.push(field_error(
                &format!("created[{op}]"),
                "Unknown parameter; use gt, gte, lt or lte.",
            ));
            continue;
        }
        match wire::parse_timestamp(&value) {
            Some(_) => {
                // Kept as given: page tokens carry it and it is parsed again with them.
                bounds.insert(op, json!(value));
            }
            None => q.errors.push(field_error(
                &format!("created[{op}]"),
                "Must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z.",
            )),
        }
    }
    if !bounds.is_empty() {
        out.insert("created".into(), Value::Object(bounds));
    }
    Value::Object(out)
}

fn field_error(path: &str, message: impl Into<String>) -> super::error::FieldError {
    super::error::FieldError {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn filter_from(params: &Value) -> EventFilter {
    let bound = |op: &str| {
        params["created"][op]
            .as_str()
            .and_then(wire::parse_timestamp)
    };
    EventFilter {
        object_id: params["object_id"].as_str().map(str::to_owned),
        types: params["types"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        created_gt: bound("gt"),
        created_gte: bound("gte"),
        created_lt: bound("lt"),
        created_lte: bound("lte"),
    }
}

pub async fn retrieve(
    State(state): State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    finish_errors(Query::parse(raw.as_deref()).finish())?;
    check_id_prefix(&id, "evt_", "event")?;
    let event = state
        .store
        .get_event(ctx.scope.clone(), id, Family::Thin)
        .await?;
    Ok(Json(wire::event(&event, ctx.context_of(&event))))
}

pub async fn retrieve_v1(State(state): State<AppState>, ctx: Ctx, PathId(id): PathId) -> ApiResult {
    check_id_prefix(&id, "evt_", "event")?;
    let event = state
        .store
        .get_event(ctx.scope.clone(), id, Family::Snapshot)
        .await?;
    Ok(Json(wire::v1_event(&event, None, ctx.context_of(&event))))
}

/// `POST /v2/core/events` (eventd extension): stores the event and its pending deliveries.
pub async fn publish(
    State(state): State<AppState>,
    ctx: Ctx,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let idem = ctx.idempotency(format!("POST {PATH}"), &Value::Object(body.clone()));
    let reason = RequestReason {
        id: ctx.request_id.clone(),
        idempotency_key: ctx.reason_idempotency_key(),
    };
    let new = parse_publish(body, reason)?;
    let event = state
        .store
        .publish_event(ctx.scope.clone(), idem, new)
        .await?;
    let context = ctx.context_of(&event);
    Ok(Json(match event.family {
        Family::Thin => wire::event(&event, context),
        Family::Snapshot => wire::v1_event(&event, None, context),
    }))
}

fn parse_publish(body: Map<String, Value>, reason: RequestReason) -> Result<NewEvent, ApiError> {
    let mut f = Fields::new(body);
    let v = f.required("type");
    let type_ = f.string("type", v, 200);
    let mut type_ok = false;
    if let Some(t) = &type_ {
        if !valid_event_type(t) || t == "*" {
            f.error(
                "type",
                format!("'{t}' is not a valid event type (lowercase words joined by dots)."),
            );
        } else if t == PING_TYPE {
            f.error(
                "type",
                "Ping events are created by POST /v2/core/event_destinations/{id}/ping.",
            );
        } else {
            type_ok = true;
        }
    }
    // What else is required depends on the type's family: with no valid type, only the type is
    // reported (a `data` that a snapshot type would need is not asked for).
    let family = type_.as_deref().filter(|_| type_ok).map(Family::of_type);
    let (related_object, data, changes) = match family {
        Some(Family::Snapshot) => (None, parse_snapshot_data(&mut f), None),
        _ => {
            let related = parse_related_object(&mut f);
            let v = f.take("data");
            let data = f.object("data", v).map(Value::Object);
            let v = f.take("changes");
            let changes = f.object("changes", v).map(Value::Object);
            (related, data, changes)
        }
    };
    f.finish()?;
    let type_ = type_.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("type validated")))?;
    Ok(NewEvent {
        type_,
        reason: Some(reason),
        related_object,
        data,
        changes,
    })
}

fn parse_related_object(f: &mut Fields) -> Option<RelatedObject> {
    let v = f.take("related_object");
    let mut sub = Fields::new(f.object("related_object", v)?);
    let v = sub.take("id");
    let id = sub.non_empty_string("id", v, 255);
    let v = sub.required("type");
    let type_ = sub.non_empty_string("type", v, 200);
    let v = sub.required("url");
    let url = sub.string("url", v, 2048);
    if let Some(u) = &url {
        if !u.starts_with('/') || u.starts_with("//") || u.chars().any(char::is_whitespace) {
            sub.error(
                "url",
                "Must be an origin-relative path such as /v1/customers/cus_123.",
            );
        }
    }
    let ok = sub.errors.is_empty();
    nested(f, "related_object", sub);
    ok.then_some(RelatedObject {
        id,
        type_: type_?,
        url: url?,
    })
}

fn parse_snapshot_data(f: &mut Fields) -> Option<Value> {
    for thin_only in ["related_object", "changes"] {
        if f.take(thin_only).is_some() {
            f.error(
                thin_only,
                "Only thin event types (v1.*, v2.*) take this field.",
            );
        }
    }
    let v = f.required("data");
    let mut sub = Fields::new(f.object("data", v)?);
    let v = sub.required("object");
    let object = sub.object("object", v);
    let v = sub.take("previous_attributes");
    let previous = sub.object("previous_attributes", v);
    let ok = sub.errors.is_empty();
    nested(f, "data", sub);
    let mut data = Map::new();
    data.insert("object".into(), Value::Object(object?));
    if let Some(p) = previous {
        data.insert("previous_attributes".into(), Value::Object(p));
    }
    ok.then_some(Value::Object(data))
}
