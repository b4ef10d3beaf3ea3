//! `current_setting(name [, missing_ok])`, as Postgres has it, for the
//! settings clients ask about: Grafana reads `server_version_num` to pick
//! its SQL dialect, drivers read `server_version`, `TimeZone`,
//! `standard_conforming_strings`, `search_path`. The values match the
//! parameters pgwire sends at startup (Postgres 16.6). An unknown name is
//! an error naming it, or NULL with `missing_ok` true.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// The settings `current_setting` knows, lower-case name first.
const SETTINGS: &[(&str, &str)] = &[
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("search_path", "public"),
    ("timezone", "UTC"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("max_identifier_length", "63"),
    ("default_transaction_read_only", "on"),
    ("transaction_read_only", "on"),
    ("is_superuser", "off"),
    ("application_name", ""),
];

fn setting(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(CurrentSetting::new()));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> CurrentSetting {
        CurrentSetting {
            signature: Signature::one_of(
                vec![TypeSignature::String(1), TypeSignature::Any(2)],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            None => false,
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(b))) => b.unwrap_or(false),
            Some(_) => {
                return exec_err!("current_setting: missing_ok must be a boolean constant");
            }
        };
        let names: ArrayRef = args.args[0].to_array(args.number_rows)?;
        let names = cast(&names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let mut values = Vec::with_capacity(names.len());
        for name in names.iter() {
            values.push(match name {
                None => None,
                Some(name) => match setting(name) {
                    Some(value) => Some(value),
                    None if missing_ok => None,
                    None => {
                        return exec_err!("unrecognized configuration parameter \"{name}\"");
                    }
                },
            });
        }
        let array: ArrayRef = Arc::new(StringArray::from(values));
        if matches!(args.args[0], ColumnarValue::Scalar(_)) {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::prelude::SessionContext;

    async fn one(ctx: &SessionContext, sql: &str) -> Option<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let column = batches[0].column(0);
        let column =
            datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let strings = column.as_string::<i32>();
        (!strings.is_null(0)).then(|| strings.value(0).to_owned())
    }

    #[tokio::test]
    async fn grafanas_version_query_and_unknown_names() {
        let ctx = SessionContext::new();
        super::register(&ctx);
        assert_eq!(
            one(
                &ctx,
                "SELECT current_setting('server_version_num')::int/100 AS version"
            )
            .await,
            Some("1600".into())
        );
        assert_eq!(
            one(&ctx, "SELECT current_setting('TimeZone')").await,
            Some("UTC".into())
        );
        assert_eq!(
            one(&ctx, "SELECT current_setting('no_such', true)").await,
            None
        );
        let err = ctx
            .sql("SELECT current_setting('no_such')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unrecognized configuration parameter \"no_such\""),
            "{err}"
        );
    }
}
