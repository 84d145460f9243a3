//! The text schema learnt from pre-data statements, described.

use super::*;
use crate::mask::shape::BaseType;
use crate::mask::tables::is_personal;
use crate::restore::lexer::{Item, Lexer};

fn learn(sql: &str) -> Schema {
    let mut schema = Schema::default();
    let text = format!("{sql}\n-- PostgreSQL database dump complete\n");
    let mut lexer = Lexer::new(text.as_bytes());
    while let Some(item) = lexer.next_item().unwrap() {
        if let Item::Statement(s) = item {
            schema.learn(&s);
        }
    }
    schema
}

fn shape(schema: &Schema, table: &str) -> TableShape {
    schema.shape(&TableName::parse(table).unwrap()).unwrap()
}

fn personal(schema: &Schema, table: &str) -> Vec<String> {
    shape(schema, table)
        .columns
        .iter()
        .filter(|c| is_personal(c))
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn text_like_and_network_columns_count_as_personal() {
    let schema = learn(
        "CREATE TYPE public.mood AS ENUM ('ok', 'sad');
         CREATE TYPE public.address AS (street text, no integer);
         CREATE TYPE public.point2 AS (x integer, y integer);
         CREATE TYPE public.span AS RANGE (subtype = integer);
         CREATE DOMAIN public.email AS public.citext CONSTRAINT email_at CHECK ((VALUE ~ '@'::text));
         CREATE DOMAIN public.score AS integer NOT NULL;
         CREATE DOMAIN public.code AS character varying(8) NOT NULL;
         CREATE TABLE public.\"order\" (
             id uuid NOT NULL,
             email public.email NOT NULL,
             name character varying(40),
             tags text[],
             ip inet,
             home public.address,
             at public.point2,
             seen timestamp(3) with time zone DEFAULT now() NOT NULL,
             mood public.mood,
             score public.score,
             range public.span,
             n numeric(10,2),
             doc jsonb DEFAULT '{}'::jsonb NOT NULL,
             odd public.unknown_type,
             code public.code,
             up text GENERATED ALWAYS AS (upper(name)) STORED,
             serial integer GENERATED ALWAYS AS IDENTITY,
             CONSTRAINT user_score CHECK ((n > (0)::numeric)),
             CONSTRAINT user_name_check CHECK ((char_length((name)::text) <= 24))
         );
         ALTER TABLE ONLY public.\"order\" ADD COLUMN phone text, ALTER COLUMN tags SET NOT NULL;
         ALTER TABLE ONLY public.\"order\" ADD CONSTRAINT order_pkey PRIMARY KEY (id);",
    );
    assert_eq!(
        personal(&schema, "public.order"),
        [
            "email", "name", "tags", "ip", "home", "doc", "odd", "code", "up", "phone"
        ]
    );
    let user = shape(&schema, "public.order");
    let col = |n: &str| user.column(n).unwrap();
    assert!(col("email").not_null && col("tags").not_null && !col("name").not_null);
    assert_eq!(col("email").base, BaseType::Text);
    assert_eq!(
        col("email").checks[0].definition,
        "CHECK ((VALUE ~ '@'::text))"
    );
    assert_eq!(col("name").type_length, Some(40));
    assert_eq!(col("name").checks[0].name, "user_name_check");
    assert_eq!(col("name").checks[0].columns, ["name"]);
    assert_eq!(
        (col("tags").base.clone(), col("tags").array),
        (BaseType::Text, true)
    );
    assert_eq!(col("tags").type_length, None);
    assert_eq!(col("ip").base, BaseType::Network);
    assert_eq!(col("doc").base, BaseType::Jsonb);
    assert_eq!(col("doc").default.as_deref(), Some("'{}'::jsonb"));
    assert_eq!(col("home").base, BaseType::Other);
    assert_eq!(col("at").base, BaseType::NotPersonal);
    assert!(col("code").not_null && col("code").type_length == Some(8));
    assert!(col("up").generated && !col("serial").generated);
    assert_eq!(col("seen").type_name, "timestamp with time zone(3)");
}

#[test]
fn inherited_columns_and_quoted_names_are_known() {
    let schema = learn(
        "CREATE TABLE \"x.y\".parent (id integer, note text);
         CREATE UNLOGGED TABLE \"x.y\".\"Child\" (extra varchar) INHERITS (\"x.y\".parent);",
    );
    assert_eq!(personal(&schema, "\"x.y\".\"Child\""), ["note", "extra"]);
    assert_eq!(
        shape(&schema, "\"x.y\".\"Child\"").parents,
        [TableName::new("x.y", "parent")]
    );
}

#[test]
fn partitions_typed_tables_and_later_changes_are_followed() {
    let schema = learn(
        "CREATE TYPE public.contact AS (email text, age integer);
         CREATE TABLE public.event (id integer, at date, email text) PARTITION BY RANGE (at);
         CREATE TABLE public.event_2024 (id integer, at date, email text);
         ALTER TABLE ONLY public.event ATTACH PARTITION public.event_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE public.event_2025 PARTITION OF public.event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE public.event_2025_q1 PARTITION OF public.event_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-04-01');
         CREATE TABLE public.card OF public.contact;
         CREATE TABLE public.t (id integer, a integer, b text);
         ALTER TABLE public.t ALTER COLUMN a TYPE xml, DROP COLUMN b;
         ALTER TABLE public.t RENAME COLUMN id TO ident;
         ALTER TABLE public.event * ADD COLUMN note text;",
    );
    let event = TableName::new("public", "event");
    assert!(shape(&schema, "event").partitioned);
    let q1 = shape(&schema, "event_2025_q1");
    assert!(q1.partition);
    assert_eq!(
        q1.parents,
        [TableName::new("public", "event_2025"), event.clone()]
    );
    assert_eq!(q1.reported(), &event);
    assert_eq!(personal(&schema, "event_2025_q1"), ["email", "note"]);
    assert_eq!(shape(&schema, "event_2024").parents, [event]);
    assert_eq!(personal(&schema, "card"), ["email"]);
    let t = shape(&schema, "t");
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ident", "a"]);
    assert_eq!(t.columns[1].base, BaseType::Xml);
}
