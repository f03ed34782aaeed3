//! The HTTP side: routes, request and response bodies, and how database errors answer.

use std::time::SystemTime;

use ringcore_http::header::{LOCATION, RETRY_AFTER};
use ringcore_http::{
    get, post, HeaderValue, IntoResponse, Json, Path, Problem, Query, Response, Router, State, StatusCode,
};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use crate::db::{Db, DbError, Health};

/// The most todos `GET /todos` returns (`?limit=` is capped to it).
pub(crate) const MAX_LIST: i64 = 1000;
/// `GET /todos` without `?limit=`.
pub(crate) const DEFAULT_LIST: i64 = 100;
/// The longest title accepted, in bytes.
pub(crate) const MAX_TITLE: usize = 1000;
/// `Retry-After` of a 503, in seconds.
pub(crate) const RETRY_AFTER_SECS: &str = "1";

/// One todo, as stored and as answered.
#[derive(Debug, Serialize)]
pub(crate) struct Todo {
    id: i64,
    title: String,
    done: bool,
}

impl Todo {
    fn from_row(row: &Row) -> Result<Todo, tokio_postgres::Error> {
        Ok(Todo {
            id: row.try_get(0)?,
            title: row.try_get(1)?,
            done: row.try_get(2)?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Debug, Deserialize)]
struct TodoPatch {
    title: Option<String>,
    done: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<i64>,
}

/// Every way a request fails; its `IntoResponse` is the answer.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 404.
    NotFound(i64),
    /// 400.
    BadRequest(String),
    /// 503 + `Retry-After`: no connection, a broken one, or past the deadline.
    Unavailable(String),
    /// 500: the database refused a query.
    Internal(String),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(why) => ApiError::Unavailable(why),
            DbError::Query(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "urn:pg-todo:not-found", "No such todo")
                    .detail(format!("no todo {id}"))
                    .into_response()
            }
            ApiError::BadRequest(why) => {
                Problem::new(StatusCode::BAD_REQUEST, "urn:pg-todo:bad-request", "Bad request")
                    .detail(why)
                    .into_response()
            }
            ApiError::Unavailable(why) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:pg-todo:database-unavailable",
                "Database unavailable",
            )
            .detail(why)
            .into_response()
            .header(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS)),
            ApiError::Internal(why) => {
                tracing::error!("database error: {why}");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "urn:pg-todo:database-error",
                    "Database error",
                )
                .into_response()
            }
        }
    }
}

fn row_error(e: tokio_postgres::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

async fn create(State(db): State<Db>, Json(new): Json<NewTodo>) -> Result<Response, ApiError> {
    if new.title.is_empty() || new.title.len() > MAX_TITLE {
        return Err(ApiError::BadRequest(format!(
            "title must be 1 to {MAX_TITLE} bytes"
        )));
    }
    let row = db
        .call(|c| async move {
            c.client
                .query_one(&c.stmts.insert, &[&new.title, &new.done])
                .await
        })
        .await?;
    let todo = Todo::from_row(&row).map_err(row_error)?;
    let location = HeaderValue::from_str(&format!("/todos/{}", todo.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(todo)).into_response())
}

async fn read(State(db): State<Db>, Path(id): Path<i64>) -> Result<Json<Todo>, ApiError> {
    let row = db
        .call(|c| async move { c.client.query_opt(&c.stmts.get, &[&id]).await })
        .await?;
    match row {
        Some(row) => Ok(Json(Todo::from_row(&row).map_err(row_error)?)),
        None => Err(ApiError::NotFound(id)),
    }
}

async fn list(State(db): State<Db>, Query(p): Query<ListParams>) -> Result<Json<Vec<Todo>>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_LIST}")));
    }
    let rows = db
        .call(|c| async move { c.client.query(&c.stmts.list, &[&limit]).await })
        .await?;
    let todos = rows
        .iter()
        .map(Todo::from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(row_error)?;
    Ok(Json(todos))
}

async fn update(
    State(db): State<Db>,
    Path(id): Path<i64>,
    Json(p): Json<TodoPatch>,
) -> Result<Json<Todo>, ApiError> {
    if let Some(t) = &p.title {
        if t.is_empty() || t.len() > MAX_TITLE {
            return Err(ApiError::BadRequest(format!(
                "title must be 1 to {MAX_TITLE} bytes"
            )));
        }
    }
    let row = db
        .call(|c| async move {
            c.client
                .query_opt(&c.stmts.update, &[&id, &p.title, &p.done])
                .await
        })
        .await?;
    match row {
        Some(row) => Ok(Json(Todo::from_row(&row).map_err(row_error)?)),
        None => Err(ApiError::NotFound(id)),
    }
}

async fn remove(State(db): State<Db>, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    let row = db
        .call(|c| async move { c.client.query_opt(&c.stmts.delete, &[&id]).await })
        .await?;
    match row {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(id)),
    }
}

#[derive(Serialize)]
struct HealthBody {
    status: &'static str,
    database: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    down_for_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// 200 when a `SELECT 1` on this core's connection answers within the query deadline; 503 +
/// `Retry-After` with the cause and how long the database has been down otherwise.
async fn healthz(State(db): State<Db>) -> Response {
    let probe = db
        .call(|c| async move { c.client.simple_query("SELECT 1").await.map(|_| ()) })
        .await;
    match (probe, db.health()) {
        (Ok(()), _) => Json(HealthBody {
            status: "ok",
            database: "up",
            down_for_secs: None,
            error: None,
        })
        .into_response(),
        (Err(e), health) => {
            let down_for_secs = match health {
                Health::Down { since, .. } => SystemTime::now()
                    .duration_since(since)
                    .ok()
                    .map(|d| d.as_secs_f64()),
                Health::Up => None,
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS))],
                Json(HealthBody {
                    status: "unavailable",
                    database: "down",
                    down_for_secs,
                    error: Some(e.to_string()),
                }),
            )
                .into_response()
        }
    }
}

/// The service's routes over this core's database handle.
pub(crate) fn router(db: Db) -> Router<Db> {
    Router::with_state(db)
        .route("/todos", post(create).get(list))
        .route("/todos/{id}", get(read).patch(update).delete(remove))
        .route("/healthz", get(healthz))
        .route("/metrics", get(ringcore_http::metrics::prometheus))
}
