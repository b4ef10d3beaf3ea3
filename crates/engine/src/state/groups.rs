//! A set of groups: keys interned by DataFusion's `GroupValues`, one
//! `GroupsAccumulator` per aggregate; frozen into state arrays when read.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::{Input, Template};

enum KeyIndex {
    Values(Box<dyn GroupValues>),
    /// No keys besides the window: one group once any row arrived.
    Single(bool),
}

/// Interned group keys and their accumulators.
pub(crate) struct Groups {
    keys: KeyIndex,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    indices: Vec<usize>,
}

/// Group keys with each aggregate's state columns, as `GroupsAccumulator::state` gives them.
pub(crate) struct Frozen {
    pub keys: Vec<ArrayRef>,
    pub states: Vec<Vec<ArrayRef>>,
    pub rows: usize,
}

impl Frozen {
    pub fn size(&self) -> usize {
        self.keys
            .iter()
            .chain(self.states.iter().flatten())
            .map(|a| a.get_array_memory_size())
            .sum()
    }
}

/// Final values of a window's groups.
pub(crate) struct Evaluated {
    pub keys: Vec<ArrayRef>,
    pub values: Vec<ArrayRef>,
    pub rows: usize,
}

impl Groups {
    pub fn new(template: &Template) -> DfResult<Groups> {
        let keys = if template.key_schema.fields().is_empty() {
            KeyIndex::Single(false)
        } else {
            KeyIndex::Values(new_group_values(
                template.key_schema.clone(),
                &GroupOrdering::None,
            )?)
        };
        Ok(Groups {
            keys,
            accumulators: template
                .aggregates
                .iter()
                .map(Template::groups_accumulator)
                .collect::<DfResult<_>>()?,
            indices: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        match &self.keys {
            KeyIndex::Values(v) => v.len(),
            KeyIndex::Single(used) => usize::from(*used),
        }
    }

    fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> DfResult<()> {
        self.indices.clear();
        match &mut self.keys {
            KeyIndex::Values(v) => v.intern(keys, &mut self.indices),
            KeyIndex::Single(used) => {
                if rows > 0 {
                    *used = true;
                }
                self.indices.resize(rows, 0);
                Ok(())
            }
        }
    }

    pub fn update(&mut self, input: &Input) -> DfResult<()> {
        self.intern(&input.keys, input.rows)?;
        let groups = self.len();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            acc.update_batch(
                &input.args[i],
                &self.indices,
                input.filters[i].as_ref(),
                groups,
            )?;
        }
        Ok(())
    }

    pub fn merge(&mut self, frozen: &Frozen) -> DfResult<()> {
        self.intern(&frozen.keys, frozen.rows)?;
        let groups = self.len();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            acc.merge_batch(&frozen.states[i], &self.indices, groups)?;
        }
        Ok(())
    }

    fn emit_keys(&mut self) -> DfResult<Vec<ArrayRef>> {
        match &mut self.keys {
            KeyIndex::Values(v) => v.emit(EmitTo::All),
            KeyIndex::Single(_) => Ok(Vec::new()),
        }
    }

    pub fn freeze(mut self) -> DfResult<Frozen> {
        let rows = self.len();
        let keys = self.emit_keys()?;
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<DfResult<_>>()?;
        Ok(Frozen { keys, states, rows })
    }

    pub fn evaluate(mut self) -> DfResult<Evaluated> {
        let rows = self.len();
        let keys = self.emit_keys()?;
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<DfResult<_>>()?;
        Ok(Evaluated { keys, values, rows })
    }

    pub fn size(&self) -> usize {
        let keys = match &self.keys {
            KeyIndex::Values(v) => v.size(),
            KeyIndex::Single(_) => 0,
        };
        keys + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }
}
