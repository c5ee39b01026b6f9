//! The AWS backend: one DynamoDB table (`pk` string hash key, `sk` string range key,
//! on-demand), every batch one TransactWriteItems, every read strongly consistent. The
//! table design is in docs/store.md.

use super::{check_batch, Cond, Item, Key, Store, StoreError, Write};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement,
    KeyType, Put, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

pub struct DynamoStore {
    client: Client,
    table: String,
}

type Attrs = HashMap<String, AttributeValue>;

/// Attempts per DynamoDB call, the first included, before a throttled or failed call
/// is an error.
const MAX_ATTEMPTS: u32 = 8;

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// A client from the standard credential chain and region; `endpoint` points it at
    /// DynamoDB Local (which accepts any credentials, so fixed ones are supplied when
    /// the chain has none).
    pub async fn connect(endpoint: Option<&str>, table: &str) -> DynamoStore {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        // A throttled call is retried with backoff. The SDK's default of 3 attempts let
        // a long scan at start fail under throttling, and `oms up` with it (the chaos
        // campaign found it); AWS_MAX_ATTEMPTS, when set, still decides.
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            loader = loader.retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
            );
        }
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "oms-local",
                ));
            }
            if std::env::var_os("AWS_REGION").is_none() {
                loader = loader.region(aws_config::Region::new("us-east-1"));
            }
        }
        let config = loader.load().await;
        DynamoStore::new(Client::new(&config), table)
    }

    /// Creates the table as the CDK app does (for DynamoDB Local and tests); a table
    /// that already exists is left as it is.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and type are set")
        };
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "create table {}: {}",
                self.table,
                DisplayErrorContext(e)
            ))),
        }
    }

    fn key_attrs(key: &Key) -> Attrs {
        HashMap::from([
            ("pk".to_string(), AttributeValue::S(key.pk.clone())),
            ("sk".to_string(), AttributeValue::S(key.sk.clone())),
        ])
    }
}

pub fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attr).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

pub fn from_attr(a: &AttributeValue) -> Value {
    match a {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or(Value::Null),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attr).collect()),
        AttributeValue::M(m) => {
            // DynamoDB maps are unordered; sort the keys so documents compare stably.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), from_attr(&m[k])))
                    .collect(),
            )
        }
        other => Value::String(format!("{other:?}")),
    }
}

fn item_from(attrs: &Attrs) -> Result<Item, StoreError> {
    let text = |name: &str| match attrs.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(StoreError::Unavailable(format!(
            "stored item has no string {name}"
        ))),
    };
    let version = match attrs.get("version") {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
        _ => 0,
    };
    let mut names: Vec<&String> = attrs
        .keys()
        .filter(|k| !super::RESERVED_FIELDS.contains(&k.as_str()))
        .collect();
    names.sort();
    let doc: Map<String, Value> = names
        .into_iter()
        .map(|k| (k.clone(), from_attr(&attrs[k])))
        .collect();
    Ok(Item {
        key: Key::new(text("pk")?, text("sk")?),
        version,
        doc: std::sync::Arc::new(doc),
    })
}

/// A condition as an expression over `#pk` and `#v`, with its values.
fn condition(cond: Cond) -> Option<(String, Attrs)> {
    match cond {
        Cond::Always => None,
        Cond::NotExists => Some(("attribute_not_exists(#pk)".into(), Attrs::new())),
        Cond::Exists => Some(("attribute_exists(#pk)".into(), Attrs::new())),
        Cond::Version(v) => Some((
            "#v = :expected".into(),
            HashMap::from([(":expected".to_string(), AttributeValue::N(v.to_string()))]),
        )),
    }
}

/// The attribute names `expressions` use: DynamoDB rejects names given but unused.
fn names(extra: &[(String, String)], expressions: &[&str]) -> HashMap<String, String> {
    let mut n: HashMap<String, String> = extra.iter().cloned().collect();
    let used = |name: &str| expressions.iter().any(|e| e.contains(name));
    if used("#pk") {
        n.insert("#pk".into(), "pk".into());
    }
    if used("#v") {
        n.insert("#v".into(), "version".into());
    }
    n
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: SdkError<E, R>,
) -> StoreError {
    StoreError::Unavailable(format!("{what}: {}", DisplayErrorContext(e)))
}

/// A transaction item's builder failed: a required field was missing.
fn built(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

impl DynamoStore {
    fn transact_item(&self, w: &Write) -> Result<TransactWriteItem, StoreError> {
        let key = w.key();
        match w {
            Write::Put { doc, cond, .. } => self.put_item(key, doc, *cond),
            Write::Add {
                deltas, min_after, ..
            } => self.add_item(key, deltas, min_after),
            Write::Check { cond, .. } => self.check_item(key, *cond),
            Write::Delete { cond, .. } => self.delete_item(key, *cond),
        }
    }

    fn put_item(
        &self,
        key: &Key,
        doc: &Map<String, Value>,
        cond: Cond,
    ) -> Result<TransactWriteItem, StoreError> {
        let next = match cond {
            Cond::Version(v) => v + 1,
            _ => 1,
        };
        let mut item = Self::key_attrs(key);
        for (k, v) in doc {
            item.insert(k.clone(), to_attr(v));
        }
        item.insert("version".into(), AttributeValue::N(next.to_string()));
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some((expr, values)) = condition(cond) {
            put = put
                .set_expression_attribute_names(Some(names(&[], &[&expr])))
                .condition_expression(expr);
            if !values.is_empty() {
                put = put.set_expression_attribute_values(Some(values));
            }
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(built)?)
            .build())
    }

    fn add_item(
        &self,
        key: &Key,
        deltas: &[(String, i64)],
        min_after: &[(String, i64)],
    ) -> Result<TransactWriteItem, StoreError> {
        let mut field_names = Vec::new();
        let mut values = Attrs::new();
        values.insert(":zero".into(), AttributeValue::N("0".into()));
        values.insert(":one".into(), AttributeValue::N("1".into()));
        let mut sets = vec!["#v = if_not_exists(#v, :zero) + :one".to_string()];
        for (i, (field, delta)) in deltas.iter().enumerate() {
            field_names.push((format!("#d{i}"), field.clone()));
            values.insert(format!(":d{i}"), AttributeValue::N(delta.to_string()));
            sets.push(format!("#d{i} = if_not_exists(#d{i}, :zero) + :d{i}"));
        }
        let mut conds = vec!["attribute_exists(#pk)".to_string()];
        for (i, (field, min)) in min_after.iter().enumerate() {
            // The condition sees the item before the update, so the minimum
            // afterwards becomes a minimum before of `min - delta`.
            let delta: i64 = deltas
                .iter()
                .filter(|(f, _)| f == field)
                .map(|(_, d)| d)
                .sum();
            field_names.push((format!("#g{i}"), field.clone()));
            values.insert(
                format!(":g{i}"),
                AttributeValue::N((min - delta).to_string()),
            );
            conds.push(format!("#g{i} >= :g{i}"));
        }
        let (update_expr, cond_expr) = (format!("SET {}", sets.join(", ")), conds.join(" AND "));
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key_attrs(key)))
            .set_expression_attribute_names(Some(names(&field_names, &[&update_expr, &cond_expr])))
            .update_expression(update_expr)
            .condition_expression(cond_expr)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(built)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn check_item(&self, key: &Key, cond: Cond) -> Result<TransactWriteItem, StoreError> {
        let (expr, values) = condition(cond).unwrap_or_else(|| {
            (
                "attribute_exists(#pk) OR attribute_not_exists(#pk)".into(),
                Attrs::new(),
            )
        });
        let mut check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key_attrs(key)))
            .set_expression_attribute_names(Some(names(&[], &[&expr])))
            .condition_expression(expr);
        if !values.is_empty() {
            check = check.set_expression_attribute_values(Some(values));
        }
        Ok(TransactWriteItem::builder()
            .condition_check(check.build().map_err(built)?)
            .build())
    }

    fn delete_item(&self, key: &Key, cond: Cond) -> Result<TransactWriteItem, StoreError> {
        let mut delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key_attrs(key)));
        if let Some((expr, values)) = condition(cond) {
            delete = delete
                .set_expression_attribute_names(Some(names(&[], &[&expr])))
                .condition_expression(expr);
            if !values.is_empty() {
                delete = delete.set_expression_attribute_values(Some(values));
            }
        }
        Ok(TransactWriteItem::builder()
            .delete(delete.build().map_err(built)?)
            .build())
    }
}

#[async_trait::async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        out.item().map(item_from).transpose()
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()));
        let q = if sk_prefix.is_empty() {
            q.key_condition_expression("pk = :pk")
        } else {
            q.key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(sk_prefix.to_string()))
        };
        let mut pages = q.into_paginator().items().send();
        let mut items = Vec::new();
        while let Some(attrs) = pages.next().await {
            items.push(item_from(&attrs.map_err(|e| unavailable("Query", e))?)?);
        }
        Ok(items)
    }

    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .scan_index_forward(false)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()));
        let q = match before {
            None => q.key_condition_expression("pk = :pk"),
            Some(b) => q
                .key_condition_expression("pk = :pk AND sk < :before")
                .expression_attribute_values(":before", AttributeValue::S(b.to_string())),
        };
        // A page of `limit` items: DynamoDB bills the items a Query reads, so reading
        // past the page would cost reads nobody asked for.
        let page_size = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut pages = q.into_paginator().page_size(page_size).items().send();
        let mut items = Vec::new();
        while items.len() < limit {
            match pages.next().await {
                Some(attrs) => items.push(item_from(&attrs.map_err(|e| unavailable("Query", e))?)?),
                None => break,
            }
        }
        Ok(items)
    }

    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let s = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true);
        let s = if pk_prefix.is_empty() {
            s
        } else {
            s.filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(pk_prefix.to_string()))
        };
        let mut pages = s.into_paginator().items().send();
        let mut items = Vec::new();
        while let Some(attrs) = pages.next().await {
            items.push(item_from(&attrs.map_err(|e| unavailable("Scan", e))?)?);
        }
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        check_batch(&writes)?;
        let items = writes
            .iter()
            .map(|w| self.transact_item(w))
            .collect::<Result<Vec<_>, _>>()?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    if let Some(index) = c
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"))
                    {
                        return Err(StoreError::ConditionFailed {
                            index,
                            key: writes[index].key().clone(),
                        });
                    }
                }
                if e.as_service_error()
                    .and_then(|s| aws_sdk_dynamodb::error::ProvideErrorMetadata::code(s))
                    == Some("ValidationException")
                {
                    return Err(StoreError::Invalid(format!(
                        "TransactWriteItems: {}",
                        DisplayErrorContext(e)
                    )));
                }
                Err(unavailable("TransactWriteItems", e))
            }
        }
    }

    fn backend(&self) -> &'static str {
        "dynamodb"
    }
    /// A DynamoDB write is durable once acknowledged.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
