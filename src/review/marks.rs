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
    /// The mark an image had when it was re-rolled (shown with the earlier version).
    rerolled: HashMap<String, Mark>,
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
            Verdict::Rerolled => {
                if let Some(mark) = self.by_image.remove(&record.image) {
                    self.rerolled.insert(record.image, mark);
                }
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

    /// The mark in force, else the one the image had when it was re-rolled.
    pub fn latest(&self, image: &str) -> Option<&Mark> {
        self.by_image.get(image).or_else(|| self.rerolled.get(image))
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
            r("c", Verdict::Rejected, Some("off-brand")),
            r("c", Verdict::Rerolled, None),
        ]);
        assert_eq!(marks.verdict(Some("c")), None, "re-rolled: pending review");
        assert_eq!(marks.latest("c").unwrap().note.as_deref(), Some("off-brand"), "its history is kept");
        assert_eq!(marks.verdict(Some("a")), Some(Verdict::Approved));
        assert_eq!(marks.get("a").unwrap().note, None);
        assert_eq!(marks.verdict(Some("b")), None);
        assert_eq!(marks.verdict(None), None);
    }
}
