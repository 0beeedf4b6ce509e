//! Search's share of a partition: the synonym sets admins put (`search.synonyms_set`), the
//! last one per set winning in log order. Read by every serving replica through the
//! `synonyms` view, so all of them expand queries alike.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shopflow_events::{Envelope, Event, Id};

use super::fold::{rows, upsert};
use super::{Fold, StatePart};
use crate::base::Changes;
use crate::views::SynonymsRow;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchState {
    pub(crate) synonyms: HashMap<Id, SynonymsRow>,
}

impl StatePart for SearchState {
    const SECTION: &'static str = "search";
    const VERSION: u32 = 1;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        if let Event::SynonymsSet(e) = &envelope.event {
            let row = SynonymsRow { set_id: e.set_id.clone(), groups: e.groups.clone() };
            upsert(&mut self.synonyms, e.set_id.clone(), Some(row), &mut out.synonyms);
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.synonyms.extend(rows(&self.synonyms));
    }
}
