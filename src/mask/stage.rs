//! The masker as the restore's stream stage, between the filter and the loader.

use bytes::Bytes;

use super::catalog::Answer;
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
