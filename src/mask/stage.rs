//! The masker as the restore's stream stage, between the filter and the loader, and what it
//! tells a stage around it of the COPY in progress.

use bytes::Bytes;

use super::catalog::Answer;
use super::shape::ColumnShape;
use super::{CopyAction, Masker};
use crate::restore::filter::Action;
use crate::restore::statement::Statement;
use crate::restore::{At, Question, StageError, StreamStage};
use crate::table::TableName;

impl StreamStage for Masker {
    type Answer = Answer;
    fn question(&mut self, at: At<'_>) -> Option<Question<Answer>> {
        let question = self.ask(at)?;
        Some(Box::new(move |client| {
            Box::pin(async move { question.ask(&client).await })
        }))
    }
    fn statement(&mut self, s: &Statement, answer: Option<Answer>) -> Result<Action, StageError> {
        Ok(Masker::statement(self, s, answer)?)
    }
    fn copy_table(&self, s: &Statement) -> TableName {
        self.copy
            .as_ref()
            .map_or_else(|| s.copy_table(), |c| c.table.clone())
    }
    fn copy_data(&mut self, data: Bytes) -> Result<Option<Bytes>, StageError> {
        Ok(Masker::copy_data(self, data)?)
    }
    fn copy_end(&mut self) -> Result<Option<Bytes>, StageError> {
        Ok(Masker::copy_end(self)?)
    }
    fn masks_copy(&self) -> bool {
        self.copy
            .as_ref()
            .is_some_and(|c| matches!(c.action, CopyAction::Mask(_)))
    }
    fn end(&mut self, answer: Option<Answer>) -> Result<(), StageError> {
        Ok(Masker::end(self, answer.expect("the end is asked about"))?)
    }
}

/// The COPY in progress, as a reader of the rows the masker passes on sees it.
pub struct CopyFields<'a> {
    /// The tables its rows land in: its own and its partitions', extensions' tables left
    /// out (an extension's script may have written rows of its own there).
    pub into: Vec<&'a TableName>,
    /// Per field: its column's name and shape (`None` if the table lacks it: the server
    /// refuses the COPY), and whether a mask rewrites it.
    pub fields: Vec<(&'a str, Option<&'a ColumnShape>, bool)>,
    /// Its rows are dropped (`anonymize.table` mode "empty").
    pub emptied: bool,
    /// Every column of its table, listed or not.
    pub columns: &'a [ColumnShape],
}

impl Masker {
    /// The COPY in progress, if one is.
    pub fn copy_fields(&self) -> Option<CopyFields<'_>> {
        let copy = self.copy.as_ref()?;
        let shape = &self.tables[&copy.table];
        let into = self
            .tree(&copy.table)
            .into_iter()
            .filter(|t| !t.catalog.as_ref().is_some_and(|c| c.extension))
            .map(|t| &t.name)
            .collect();
        let fields = copy
            .fields
            .iter()
            .map(|(name, masked)| (name.as_str(), shape.column(name), *masked))
            .collect();
        Some(CopyFields {
            into,
            fields,
            emptied: matches!(copy.action, CopyAction::Empty { .. }),
            columns: &shape.columns,
        })
    }
}
