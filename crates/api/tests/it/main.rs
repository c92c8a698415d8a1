//! Integration tests of viewcreator-api: a real service on port 0 over a
//! fresh PostgreSQL database per test (`#[sqlx::test]`, DATABASE_URL).

mod batch;
mod helpers;
mod openapi;
mod outage;
mod process;
mod receiver;
mod rest;
mod submission;
mod ws;
