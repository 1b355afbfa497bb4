//! Marks folded from the review log: the current verdict and note of every image.

use std::collections::HashMap;

use serde::Serialize;

use super::log::{MarkRecord, Verdict};

/// A mark in force (approved or rejected; a cleared image has none: it is pending review).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    pub mark: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: String,
}

/// The last word on every image, by content hash.
#[derive(Debug, Default, Clone)]
pub struct Marks {
    by_image: HashMap<String, Mark>,
}

impl Marks {
    pub fn from_records(records: impl IntoIterator<Item = MarkRecord>) -> Marks {
        let mut marks = Marks::default();
        for record in records {
            marks.apply(record);
        }
        marks
    }

    pub fn apply(&mut self, record: MarkRecord) {
        match record.mark {
            Verdict::Cleared => {
                self.by_image.remove(&record.image);
            }
            mark => {
                self.by_image.insert(record.image, Mark { mark, note: record.note, at: record.at });
            }
        }
    }

    /// The mark of the image with this content hash; `None`: pending review.
    pub fn get(&self, image: &str) -> Option<&Mark> {
        self.by_image.get(image)
    }

    pub fn verdict(&self, image: Option<&str>) -> Option<Verdict> {
        image.and_then(|i| self.get(i)).map(|m| m.mark)
    }

    pub fn is_empty(&self) -> bool {
        self.by_image.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_record_wins_and_clear_means_pending() {
        let r =
            |image: &str, mark, note: Option<&str>| MarkRecord::new(image, "id", "p", mark, note.map(str::to_owned));
        let marks = Marks::from_records([
            r("a", Verdict::Rejected, Some("too dark")),
            r("a", Verdict::Approved, None),
            r("b", Verdict::Rejected, None),
            r("b", Verdict::Cleared, None),
        ]);
        assert_eq!(marks.verdict(Some("a")), Some(Verdict::Approved));
        assert_eq!(marks.get("a").unwrap().note, None);
        assert_eq!(marks.verdict(Some("b")), None);
        assert_eq!(marks.verdict(None), None);
    }
}
