//! Counting matches per brand from the brand id column. tantivy's `FacetCollector` names each
//! counted facet with one dictionary lookup per facet and segment, which with ~1,600 brands
//! cost tens of milliseconds per broad query; here the counts are by term ordinal and the
//! ordinals that counted are named in one sorted pass over each segment's dictionary.

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// Matches per value of a string fast field (one value per document).
pub(crate) struct ValueCounts {
    pub field: &'static str,
}

pub(crate) struct SegmentValueCounts {
    column: Option<StrColumn>,
    counts: Vec<u32>,
}

impl Collector for ValueCounts {
    type Fruit = HashMap<String, u64>;
    type Child = SegmentValueCounts;

    fn for_segment(&self, _: SegmentOrdinal, segment: &SegmentReader) -> tantivy::Result<SegmentValueCounts> {
        let column = segment.fast_fields().str(self.field)?;
        let counts = vec![0; column.as_ref().map_or(0, |c| c.num_terms())];
        Ok(SegmentValueCounts { column, counts })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, segments: Vec<HashMap<String, u64>>) -> tantivy::Result<HashMap<String, u64>> {
        let mut total: HashMap<String, u64> = HashMap::new();
        for segment in segments {
            for (value, count) in segment {
                *total.entry(value).or_default() += count;
            }
        }
        Ok(total)
    }
}

impl SegmentCollector for SegmentValueCounts {
    type Fruit = HashMap<String, u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(column) = &self.column {
            for ord in column.term_ords(doc) {
                self.counts[ord as usize] += 1;
            }
        }
    }

    fn harvest(self) -> HashMap<String, u64> {
        let Some(column) = self.column else { return HashMap::new() };
        let counted: Vec<(u64, u64)> =
            self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(ord, c)| (ord as u64, u64::from(*c))).collect();
        let ords: Vec<u64> = counted.iter().map(|(ord, _)| *ord).collect();
        let mut out = HashMap::with_capacity(counted.len());
        let mut next = counted.iter();
        // One pass over the dictionary for every ordinal that counted, in order.
        let named = column.dictionary().sorted_ords_to_term_cb(&ords, |term| {
            if let Some((_, count)) = next.next() {
                out.insert(String::from_utf8_lossy(term).into_owned(), *count);
            }
        });
        if let Err(e) = named {
            tracing::warn!(error = %e, "facet values could not be named");
        }
        out
    }
}
