//! The names and secrets the tests share: what the test world's config says, what the fixtures
//! hold, what the tests look for. One place, so a test checks the value the config was given.

/// `anonymize.admin_email` and `anonymize.admin_password`: the one account staging keeps usable.
pub const ADMIN_EMAIL: &str = "admin@staging.example.com";
pub const ADMIN_PASSWORD: &str = "staging-admin-password";

/// The role that owns staging's app database (`database.owner`).
pub const OWNER: &str = "staging_owner";
/// The role the refresh connects as: not a superuser.
pub const REFRESH_ROLE: &str = "staging_refresh";
/// The password the restore roles are created with (`database.restore_password_file`).
pub const RESTORE_PASSWORD: &str = "restore-role-password";
/// The row every staging database starts with, to tell its data from production's.
pub const SENTINEL: &str = "staging before the refresh";

/// The production database the snapshots are dumps of (`snapshot.database`).
pub const PROD_DB: &str = "app";
/// The role that owns the production database; staging does not have it.
pub const PROD_OWNER: &str = "app_prod";
/// The production admin in the fixture (the test world's `anonymize.prod_admin_email`).
pub const PROD_ADMIN_EMAIL: &str = "info@shootify.io";
/// Users in the production database the tests restore.
pub const PROD_USERS: u64 = 200;

/// The credentials and region every bucket section gives the S3 server (moto accepts any).
pub const S3_ACCESS_KEY: &str = "test-access-key";
pub const S3_SECRET_KEY: &str = "test-secret-key";
pub const S3_REGION: &str = "us-east-1";
