//! HTTP in and out: the public and admin routers, and the client the CLI
//! uses to reach a running gateway's admin API. Handlers only translate
//! between HTTP and the layers below.

pub mod admin;
pub mod admin_client;
pub mod http;
