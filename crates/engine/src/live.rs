//! The live view store: per view, the running rows of open windows (replaced
//! every tick) and the most recent final rows (bounded), queryable as
//! DataFusion tables `live.<view>` with an `is_final` column.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::WINDOW_START;

/// Column added to live tables: false for running values of an open window.
pub const IS_FINAL: &str = "is_final";

struct LiveView {
    schema: SchemaRef,
    running: Vec<RecordBatch>,
    finals: VecDeque<RecordBatch>,
    final_rows: usize,
    max_rows: usize,
}

impl LiveView {
    fn snapshot(&self) -> Vec<RecordBatch> {
        self.finals
            .iter()
            .chain(self.running.iter())
            .cloned()
            .collect()
    }
}

/// Shared handle to every view's live rows.
#[derive(Clone, Default)]
pub struct LiveStore {
    views: Arc<RwLock<BTreeMap<String, LiveView>>>,
}

impl LiveStore {
    /// Adds a view whose rows have `schema`, keeping at most `max_rows` final rows.
    pub(crate) fn add(&self, name: &str, schema: &SchemaRef, max_rows: usize) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(IS_FINAL, DataType::Boolean, false)));
        let live_schema = Arc::new(Schema::new(fields));
        self.views
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name.to_owned(),
                LiveView {
                    schema: live_schema.clone(),
                    running: Vec::new(),
                    finals: VecDeque::new(),
                    final_rows: 0,
                    max_rows: max_rows.max(1),
                },
            );
        live_schema
    }

    pub(crate) fn remove(&self, name: &str) {
        self.views
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    fn with_flag(schema: &SchemaRef, batch: &RecordBatch, is_final: bool) -> DfResult<RecordBatch> {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(BooleanArray::from(vec![
            is_final;
            batch.num_rows()
        ])));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    pub(crate) fn push_final(&self, name: &str, batches: &[RecordBatch]) -> DfResult<()> {
        let mut views = self.views.write().unwrap_or_else(PoisonError::into_inner);
        let Some(view) = views.get_mut(name) else {
            return Ok(());
        };
        let mut closed: HashSet<i64> = HashSet::new();
        let start = view.schema.index_of(WINDOW_START).ok();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let batch = Self::with_flag(&view.schema, batch, true)?;
            if let Some(i) = start {
                let starts = cast(batch.column(i), &DataType::Int64)?;
                closed.extend(starts.as_primitive::<Int64Type>().iter().flatten());
            }
            view.final_rows += batch.num_rows();
            view.finals.push_back(batch);
        }
        // The closed windows' running rows go with them, not at the next
        // tick: a reader in between would count those windows twice.
        if let (Some(i), false) = (start, closed.is_empty()) {
            let mut kept = Vec::with_capacity(view.running.len());
            for batch in &view.running {
                let starts = cast(batch.column(i), &DataType::Int64)?;
                let open: BooleanArray = starts
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|t| Some(t.is_none_or(|t| !closed.contains(&t))))
                    .collect();
                let batch = filter_record_batch(batch, &open)?;
                if batch.num_rows() > 0 {
                    kept.push(batch);
                }
            }
            view.running = kept;
        }
        while view.final_rows > view.max_rows && view.finals.len() > 1 {
            if let Some(old) = view.finals.pop_front() {
                view.final_rows -= old.num_rows();
            }
        }
        Ok(())
    }

    pub(crate) fn set_running(&self, name: &str, batches: &[RecordBatch]) -> DfResult<()> {
        let mut views = self.views.write().unwrap_or_else(PoisonError::into_inner);
        let Some(view) = views.get_mut(name) else {
            return Ok(());
        };
        view.running = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| Self::with_flag(&view.schema, b, false))
            .collect::<DfResult<_>>()?;
        Ok(())
    }

    /// The view's running rows (open windows), without the `is_final` column.
    pub(crate) fn running(&self, name: &str) -> Vec<RecordBatch> {
        let views = self.views.read().unwrap_or_else(PoisonError::into_inner);
        let Some(view) = views.get(name) else {
            return Vec::new();
        };
        let columns: Vec<usize> = (0..view.schema.fields().len() - 1).collect();
        view.running
            .iter()
            .filter_map(|b| b.project(&columns).ok())
            .collect()
    }

    /// Names of the views in the store.
    pub fn names(&self) -> Vec<String> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The view's current rows: recent final ones, then running ones.
    pub fn rows(&self, name: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let views = self.views.read().unwrap_or_else(PoisonError::into_inner);
        views.get(name).map(|v| (v.schema.clone(), v.snapshot()))
    }

    /// A DataFusion table reading the view's current rows at each scan.
    pub fn table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        let schema = self
            .views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)?
            .schema
            .clone();
        Some(Arc::new(LiveTable {
            store: self.clone(),
            name: name.to_owned(),
            schema,
        }))
    }
}

#[derive(Debug)]
struct LiveTable {
    store: LiveStore,
    name: String,
    schema: SchemaRef,
}

impl std::fmt::Debug for LiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStore")
            .field("views", &self.names())
            .finish()
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = self
            .store
            .rows(&self.name)
            .map(|(_, b)| b)
            .unwrap_or_default();
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
