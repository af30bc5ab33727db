//! How the stock transforms name events, the same rules on every platform.
//!
//! An event's type is `ionflux.{provider}.ws_{w}.brand_{b}.{kind}`: the host
//! writes the prefix, the transform gives the `kind`, `{entity}.{action}`
//! (see [`is_valid_kind`](crate::is_valid_kind)). The rules:
//!
//! 1. **Segments are lower snake_case**, `[a-z0-9_]+`: camelCase words are
//!    split (`statusUpdated` → `status_updated`, `AppInstalled` →
//!    `app_installed`), letters are lower-cased, and every other character
//!    becomes `_` (`edit-v2` → `edit_v2`). An empty segment becomes `_`.
//!    See [`segment`].
//! 2. **The entity comes first, the action last**, each as the platform names
//!    it: `order.created`, `issues.opened`, `customer.subscription.created`
//!    (a platform's own dotted names keep their depth).
//! 3. **Actions read as facts**: the CRUD verbs a platform sends in the
//!    present tense are put in the past tense, `create` → `created`,
//!    `update` → `updated`, `delete` → `deleted`, `restore` → `restored`
//!    (see [`action`]). Every other action is kept as sent (`paid`,
//!    `uninstalled`, `opened`, `data_request`): guessing at English is how
//!    two platforms' names drift apart.
//! 4. **An event that names no action is `{entity}.received`**: GitHub's
//!    `push`, a sender whose topic is one word. See [`NO_ACTION`].
//! 5. **Where a platform names events by a code or a noun phrase**, its
//!    transform keeps a table (TikTok Shop's `ORDER_STATUS_CHANGE` →
//!    `order.status_changed`), and a name the table does not know falls
//!    back to rules 1 to 4, so a new event still arrives, under a name
//!    routes can match, rather than as a dead letter.
//!
//! The schema version is `v1.{provider}.{api_version}`, or
//! `v1.{provider}.unversioned` when the webhook names no API version (see
//! [`schema_version`]).
//!
//! ```
//! use ionflux_guest::naming;
//! assert_eq!(naming::kind("order", "create"), "order.created");
//! assert_eq!(naming::topic_kind("orders/create"), "orders.created");
//! assert_eq!(naming::topic_kind("store/order/statusUpdated"), "store.order.status_updated");
//! assert_eq!(naming::topic_kind("push"), "push.received");
//! assert_eq!(naming::schema_version("woocommerce", None), "v1.woocommerce.unversioned");
//! ```

/// The action of an event that names none (rule 4).
pub const NO_ACTION: &str = "received";

/// One segment of a kind (rule 1): lower snake_case, `[a-z0-9_]+`.
///
/// A run of capitals is one word (`HTTPServer` → `http_server`, `ORDERS` →
/// `orders`), so upper-case names (`ORDER_STATUS_CHANGE`) only change case.
pub fn segment(text: &str) -> String {
    let chars: Vec<char> = text.trim().chars().collect();
    let mut out = String::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let starts_word = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(char::is_ascii_lowercase),
                _ => false,
            };
            if starts_word {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// An action segment (rules 1 and 3): [`segment`], with the present-tense
/// CRUD verbs put in the past tense.
pub fn action(text: &str) -> String {
    let action = segment(text);
    match action.as_str() {
        "create" => "created".to_owned(),
        "update" => "updated".to_owned(),
        "delete" => "deleted".to_owned(),
        "restore" => "restored".to_owned(),
        _ => action,
    }
}

/// `{entity}.{action}` (rules 1 to 3); an empty action is [`NO_ACTION`]
/// (rule 4). The entity may hold dots of its own (`customer.subscription`):
/// each part becomes a segment.
pub fn kind(entity: &str, action: &str) -> String {
    let entity: Vec<String> = entity.split('.').map(segment).collect();
    let action = if action.trim().is_empty() {
        NO_ACTION.to_owned()
    } else {
        self::action(action)
    };
    format!("{}.{action}", entity.join("."))
}

/// The kind for a topic that is already `entity{sep}action`, with `.` or
/// `/` as separators (`orders/create`, `invoice.paid`, `contact.created`,
/// `store/order/statusUpdated`): every part a [`segment`], the last an
/// [`action`]; a one-part topic gets [`NO_ACTION`]. Always of the kind's
/// pattern; the host also caps kinds at 128 bytes, and refuses a longer one
/// (a dead letter that says so) rather than have two topics cut to one.
pub fn topic_kind(topic: &str) -> String {
    let parts: Vec<&str> = topic.trim().split(['.', '/']).collect();
    match parts.split_last() {
        Some((last, entity)) if !entity.is_empty() => {
            let mut segments: Vec<String> = entity.iter().map(|p| segment(p)).collect();
            segments.push(action(last));
            segments.join(".")
        }
        _ => format!("{}.{NO_ACTION}", segment(topic)),
    }
}

/// `v1.{provider}.{api_version}`, or `v1.{provider}.unversioned` when there
/// is no (or an empty) API version. Made to fit the host's
/// `^[A-Za-z0-9._-]{1,64}$`, since the version may come from the sender:
/// any other character becomes `_`, and the text is cut at 64 bytes.
pub fn schema_version(provider: &str, api_version: Option<&str>) -> String {
    let version = match api_version.map(str::trim) {
        Some(v) if !v.is_empty() => format!("v1.{provider}.{v}"),
        _ => format!("v1.{provider}.unversioned"),
    };
    version
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .take(MAX_SCHEMA_VERSION)
        .collect()
}

/// The host's limit on a schema version, in bytes (ASCII here).
const MAX_SCHEMA_VERSION: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::is_valid_kind;

    #[test]
    fn segments() {
        for (text, want) in [
            ("order", "order"),
            ("ORDER_STATUS_CHANGE", "order_status_change"),
            ("statusUpdated", "status_updated"),
            ("AppInstalled", "app_installed"),
            (
                "PaidPlanAutoRenewalCancelled",
                "paid_plan_auto_renewal_cancelled",
            ),
            ("HTTPServer", "http_server"),
            ("edit-v2", "edit_v2"),
            ("v2", "v2"),
            ("Order Created!", "order_created_"),
            ("", "_"),
            ("  ", "_"),
            ("é", "_"),
        ] {
            assert_eq!(segment(text), want, "{text:?}");
        }
    }

    #[test]
    fn actions_read_as_facts() {
        for (text, want) in [
            ("create", "created"),
            ("Update", "updated"),
            ("delete", "deleted"),
            ("restore", "restored"),
            ("created", "created"),
            ("paid", "paid"),
            ("opened", "opened"),
            ("synchronize", "synchronize"),
        ] {
            assert_eq!(action(text), want, "{text:?}");
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(kind("order", "create"), "order.created");
        assert_eq!(kind("issues", "opened"), "issues.opened");
        assert_eq!(kind("push", ""), "push.received");
        assert_eq!(
            kind("customer.subscription", "created"),
            "customer.subscription.created"
        );
        assert_eq!(kind("", ""), "_.received");
    }

    #[test]
    fn topic_kinds() {
        for (topic, want) in [
            ("orders/create", "orders.created"),
            ("order.created", "order.created"),
            ("invoice.paid", "invoice.paid"),
            (
                "customer.subscription.created",
                "customer.subscription.created",
            ),
            (
                "v1.billing.meter.error_report_triggered",
                "v1.billing.meter.error_report_triggered",
            ),
            ("store/order/statusUpdated", "store.order.status_updated"),
            ("push", "push.received"),
            ("orders/", "orders._"),
            ("/", "_._"),
            ("", "_.received"),
            ("Weird Topic", "weird_topic.received"),
        ] {
            let got = topic_kind(topic);
            assert_eq!(got, want, "{topic:?}");
            assert!(is_valid_kind(&got), "{topic:?} → {got}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(schema_version("wix", Some("2024-01")), "v1.wix.2024-01");
        assert_eq!(schema_version("wix", Some(" ")), "v1.wix.unversioned");
        assert_eq!(schema_version("hmac", None), "v1.hmac.unversioned");
        assert_eq!(schema_version("x", Some("wc/v3 é")), "v1.x.wc_v3__");
        assert_eq!(schema_version("x", Some(&"9".repeat(100))).len(), 64);
    }
}
