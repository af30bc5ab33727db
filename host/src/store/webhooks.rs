//! Stored webhooks as an operator looks for them ("where is my webhook"):
//! the inbox filtered and paged newest first, one webhook's record, and the
//! attempts the dispatcher kept of it (`inbox_attempts`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Blob, Delivery, Params, ROWS_PER_STATEMENT, Result, Store, StoreError};

/// What `Store::find_webhooks` looks for; every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct WebhookFilter {
    /// A workspace token's own; None: every workspace (an operator).
    pub workspace_id: Option<String>,
    pub connection_id: Option<String>,
    pub provider: Option<String>,
    pub topic: Option<String>,
    /// pending, published or dead.
    pub status: Option<String>,
    /// Received at or after, epoch ms.
    pub received_after: Option<i64>,
    /// Received before, epoch ms.
    pub received_before: Option<i64>,
    /// The platform's delivery id (what its delivery header says): the inbox's
    /// `webhook_id`, its deduplication key.
    pub delivery_id: Option<String>,
    /// Only webhooks older than this inbox id: the previous page's cursor.
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// One stored webhook in a list: what it is and where it stands, never its
/// body.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookSummary {
    pub id: i64,
    pub provider: String,
    pub connection_id: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub account: String,
    pub topic: String,
    pub webhook_id: String,
    pub status: String,
    pub attempts: i64,
    pub received_at: i64,
    pub trace_id: String,
}

/// One stored webhook with what its row records of its life.
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    pub summary: WebhookSummary,
    pub api_version: Option<String>,
    pub occurred_at: Option<String>,
    /// The platform's own event id, when it sends one.
    pub event_id: Option<String>,
    /// The headers intake kept (never a signature).
    pub headers: Vec<(String, String)>,
    /// Pending: when it is due again (epoch ms).
    pub next_attempt_at: i64,
    /// The latest transient failure.
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
    /// Where its records went when it was last finished.
    pub deliveries: Vec<Delivery>,
    /// Decoded; only when asked for.
    pub body: Option<Vec<u8>>,
}

/// One attempt the dispatcher recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRecord {
    pub attempt: i64,
    /// Epoch ms.
    pub at: i64,
    /// published, dead or retry.
    pub outcome: String,
    pub reason_code: Option<String>,
    pub error: Option<String>,
    pub route_id: Option<i64>,
    pub transform: Option<String>,
    pub transform_digest: Option<String>,
}

const SUMMARY_COLUMNS: &str = "id, provider, connection_id, workspace_id, brand_id, account, \
     topic, webhook_id, status, attempts, received_at, trace_id";

impl Store {
    /// Stored webhooks matching `filter`, newest first, at most its limit.
    /// A connection's rows are read backwards along its index; a
    /// workspace's are its connections' pages merged (there is no
    /// workspace index: it would cost intake as much again); an operator's
    /// unscoped list reads the inbox backwards by id. The other filters
    /// narrow what that yields. A delivery id is looked up first through
    /// the inbox's unique (connection, delivery id) key, one probe per
    /// connection in scope, and the page is then made of those rows alone.
    pub async fn find_webhooks(&self, filter: &WebhookFilter) -> Result<Vec<WebhookSummary>> {
        let ids = match &filter.delivery_id {
            Some(delivery) => {
                let ids = self.delivery_ids(filter, delivery).await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                Some(ids)
            }
            None => None,
        };
        if let (None, None, Some(workspace)) = (&ids, &filter.connection_id, &filter.workspace_id) {
            // The newest `limit` of the workspace are among the newest
            // `limit` of each of its connections.
            let connections: Vec<String> =
                sqlx::query_scalar("SELECT id FROM connections WHERE workspace_id = $1")
                    .bind(workspace)
                    .fetch_all(&self.pool)
                    .await?;
            let mut rows = Vec::new();
            for connection in connections {
                let one = WebhookFilter {
                    connection_id: Some(connection),
                    ..filter.clone()
                };
                rows.extend(self.find_rows(&one, None).await?);
            }
            rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
            rows.truncate(usize::try_from(filter.limit).unwrap_or(0));
            return Ok(rows);
        }
        self.find_rows(filter, ids.as_deref()).await
    }

    /// One query of `find_webhooks`, of the rows among `ids` when given.
    async fn find_rows(
        &self,
        filter: &WebhookFilter,
        ids: Option<&[i64]>,
    ) -> Result<Vec<WebhookSummary>> {
        let sql = find_webhooks_sql(self.backend, filter, ids.map_or(0, <[i64]>::len));
        let mut q = sqlx::query_as::<_, WebhookSummary>(&sql);
        for v in text_filters(filter).into_iter().flat_map(|(_, v)| v) {
            q = q.bind(v.as_str());
        }
        for bound in [
            filter.received_after,
            filter.received_before,
            filter.before_id,
        ]
        .into_iter()
        .flatten()
        {
            q = q.bind(bound);
        }
        for id in ids.into_iter().flatten() {
            q = q.bind(*id);
        }
        Ok(q.bind(filter.limit).fetch_all(&self.pool).await?)
    }

    /// The inbox ids of `delivery` on the connections in `filter`'s scope,
    /// newest first: few (a delivery id is one platform's, on one
    /// connection, bar a platform reusing ids), so capped at one statement's
    /// worth.
    async fn delivery_ids(&self, filter: &WebhookFilter, delivery: &str) -> Result<Vec<i64>> {
        let sql = delivery_ids_sql(self.backend, filter);
        // No ORDER BY … LIMIT: it could tempt a planner into reading the
        // whole inbox backwards by id in search of a match.
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(delivery);
        for v in [&filter.workspace_id, &filter.connection_id]
            .into_iter()
            .flatten()
        {
            q = q.bind(v.as_str());
        }
        let mut ids = q.fetch_all(&self.pool).await?;
        ids.sort_unstable_by_key(|id| std::cmp::Reverse(*id));
        ids.truncate(ROWS_PER_STATEMENT);
        Ok(ids)
    }

    /// One stored webhook by inbox id, with its body when `with_body`.
    pub async fn stored_webhook(&self, id: i64, with_body: bool) -> Result<Option<StoredWebhook>> {
        let body = if with_body {
            ", body, body_encoding"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, api_version, occurred_at, event_id, headers,
                next_attempt_at, last_error, finished_at, deliveries {body}
             FROM inbox WHERE id = $1"
        );
        let Some(r) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        stored_webhook_from(&r, with_body).map(Some)
    }

    /// The attempts recorded at a stored webhook, oldest first.
    pub async fn webhook_attempts(&self, inbox_id: i64) -> Result<Vec<AttemptRecord>> {
        Ok(sqlx::query_as(
            "SELECT attempt, at, outcome, reason_code, error, route_id, transform,
                transform_digest
             FROM inbox_attempts WHERE inbox_id = $1 ORDER BY attempt",
        )
        .bind(inbox_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The text filters of `filter`, as (column expression, value), in
/// `find_webhooks_sql`'s order.
fn text_filters(filter: &WebhookFilter) -> [(&'static str, &Option<String>); 5] {
    [
        ("workspace_id", &filter.workspace_id),
        ("connection_id", &filter.connection_id),
        ("provider", &filter.provider),
        ("topic", &filter.topic),
        ("status", &filter.status),
    ]
}

/// `find_webhooks`' query: binds the text filters given, received after,
/// before, the cursor, `ids` inbox ids, then the limit.
fn find_webhooks_sql(backend: Backend, filter: &WebhookFilter, ids: usize) -> String {
    let mut p = Params::new(backend);
    let mut clauses: Vec<String> = Vec::new();
    for (column, value) in text_filters(filter) {
        if value.is_some() {
            clauses.push(format!("{column} = {}", p.p()));
        }
    }
    if filter.received_after.is_some() {
        clauses.push(format!("received_at >= {}", p.p()));
    }
    if filter.received_before.is_some() {
        clauses.push(format!("received_at < {}", p.p()));
    }
    if filter.before_id.is_some() {
        clauses.push(format!("id < {}", p.p()));
    }
    if ids > 0 {
        clauses.push(format!("id IN ({})", p.list(ids)));
    }
    let filters = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM inbox {filters} ORDER BY id DESC LIMIT {}",
        p.p()
    )
}

/// `delivery_ids`' query: binds the delivery id, then the workspace and
/// the connection when given.
fn delivery_ids_sql(backend: Backend, filter: &WebhookFilter) -> String {
    let mut p = Params::new(backend);
    // CROSS JOIN: SQLite then loops over the connections and probes the
    // inbox's unique key for each; left to choose, without statistics it
    // scanned that whole key instead. PostgreSQL plans a CROSS JOIN with
    // conditions as any join.
    let mut sql = format!(
        "SELECT i.id FROM connections c CROSS JOIN inbox i
         WHERE i.connection_id = c.id AND i.webhook_id = {}",
        p.p()
    );
    if filter.workspace_id.is_some() {
        sql += &format!(" AND c.workspace_id = {}", p.p());
    }
    if filter.connection_id.is_some() {
        sql += &format!(" AND c.id = {}", p.p());
    }
    sql
}

fn stored_webhook_from(r: &AnyRow, with_body: bool) -> Result<StoredWebhook> {
    use sqlx::FromRow as _;
    let headers: String = r.try_get("headers")?;
    let headers = serde_json::from_str(&headers)
        .map_err(|e| StoreError::Corrupt(format!("inbox headers: {e}")))?;
    let deliveries = match r.try_get::<Option<String>, _>("deliveries")? {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("inbox deliveries: {e}")))?,
        None => Vec::new(),
    };
    let body = if with_body {
        Some(Blob::decode(
            &r.try_get::<String, _>("body_encoding")?,
            r.try_get("body")?,
        )?)
    } else {
        None
    };
    Ok(StoredWebhook {
        summary: WebhookSummary::from_row(r)?,
        api_version: r.try_get("api_version")?,
        occurred_at: r.try_get("occurred_at")?,
        event_id: r.try_get("event_id")?,
        headers,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        finished_at: r.try_get("finished_at")?,
        deliveries,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan of `sql`, its placeholders bound to NULL.
    async fn plan(store: &Store, sql: &str) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query(&explain);
        for _ in 0..sql.matches('?').count() {
            q = q.bind(None::<String>);
        }
        q.fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The lookups read along an index, whatever is asked, on a database
    /// without statistics (SQLite's, as the gateway leaves it): no scan of
    /// the inbox or of one of its keys.
    #[tokio::test]
    async fn lookups_search_an_index_and_never_scan_the_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("plans.db").display());
        let store = Store::connect(&url).await.unwrap();
        let some = || Some("x".to_string());
        let scoped = |connection: bool, workspace: bool| WebhookFilter {
            connection_id: connection.then(some).flatten(),
            workspace_id: workspace.then(some).flatten(),
            topic: some(),
            status: some(),
            before_id: Some(9),
            ..WebhookFilter::default()
        };
        for (filter, ids, index) in [
            (scoped(true, false), 0, "inbox_connection_newest"),
            // A workspace's list is its connections'.
            (scoped(true, true), 0, "inbox_connection_newest"),
            // A delivery id's few rows, each looked up by id.
            (scoped(false, true), 2, "INTEGER PRIMARY KEY (rowid=?)"),
        ] {
            let sql = find_webhooks_sql(Backend::Sqlite, &filter, ids);
            let plan = plan(&store, &sql).await;
            assert!(plan.contains(index), "{filter:?}: {plan}");
            assert!(!plan.contains("SCAN"), "{filter:?}: {plan}");
        }
        for filter in [
            scoped(false, false),
            scoped(false, true),
            scoped(true, true),
        ] {
            let plan = plan(&store, &delivery_ids_sql(Backend::Sqlite, &filter)).await;
            assert!(
                plan.contains("SEARCH i USING COVERING INDEX sqlite_autoindex_inbox_1"),
                "{filter:?}: {plan}"
            );
            assert!(!plan.contains("SCAN i"), "{filter:?}: {plan}");
        }
    }
}
