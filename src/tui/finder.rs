//! A fuzzy finder over labelled choices: the command palette, the input picker and
//! the class picker are each one of these (helix's matcher, `nucleo-matcher`).

use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher};

/// A list narrowed as the user types, best match first.
pub struct Finder<T> {
    pub title: String,
    pub query: String,
    items: Vec<(String, T)>,
    /// Indices into `items` that match the query, best first.
    shown: Vec<usize>,
    pub selected: usize,
    matcher: Matcher,
}

impl<T> Finder<T> {
    /// A finder titled `title` over `items` (label, value), all shown at first.
    pub fn new(title: impl Into<String>, items: Vec<(String, T)>) -> Self {
        let shown = (0..items.len()).collect();
        Self {
            title: title.into(),
            query: String::new(),
            items,
            shown,
            selected: 0,
            matcher: Matcher::new(Config::DEFAULT),
        }
    }

    /// Types `c` into the query.
    pub fn push(&mut self, c: char) {
        self.query.push(c);
        self.refilter();
    }

    /// Deletes the query's last character.
    pub fn pop(&mut self) {
        self.query.pop();
        self.refilter();
    }

    /// Moves the selection by `step`, staying in the list.
    pub fn step(&mut self, step: isize) {
        let last = self.shown.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(step).min(last);
    }

    /// The selected value, if anything matches.
    pub fn chosen(&self) -> Option<&T> {
        self.shown.get(self.selected).map(|&i| &self.items[i].1)
    }

    /// The labels shown, best first, with whether each is selected.
    pub fn shown(&self) -> impl Iterator<Item = (&str, bool)> {
        self.shown
            .iter()
            .enumerate()
            .map(|(rank, &i)| (self.items[i].0.as_str(), rank == self.selected))
    }

    /// How many match, of how many.
    pub fn counts(&self) -> (usize, usize) {
        (self.shown.len(), self.items.len())
    }

    fn refilter(&mut self) {
        let pattern = Pattern::parse(&self.query, CaseMatching::Ignore, Normalization::Smart);
        let labels = self
            .items
            .iter()
            .enumerate()
            .map(|(i, (label, _))| Labelled(i, label));
        let mut matches = pattern.match_list(labels, &mut self.matcher);
        // Equal scores keep the list's own order.
        matches.sort_by_key(|(Labelled(i, _), score)| (std::cmp::Reverse(*score), *i));
        self.shown = matches.into_iter().map(|(Labelled(i, _), _)| i).collect();
        self.selected = 0;
    }
}

/// A label with its item's index, for the matcher.
struct Labelled<'a>(usize, &'a str);

impl AsRef<str> for Labelled<'_> {
    fn as_ref(&self) -> &str {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_narrows_and_ranks() {
        let items = ["grad-cam", "guided-backprop", "saliency", "guided-grad-cam"]
            .map(|s| (s.to_string(), s));
        let mut finder = Finder::new("methods", items.to_vec());
        assert_eq!(finder.counts(), (4, 4));
        for c in "gcam".chars() {
            finder.push(c);
        }
        let shown: Vec<&str> = finder.shown().map(|(l, _)| l).collect();
        assert_eq!(shown, ["grad-cam", "guided-grad-cam"]);
        assert_eq!(finder.chosen(), Some(&"grad-cam"));
        finder.step(5);
        assert_eq!(finder.chosen(), Some(&"guided-grad-cam"));
        finder.push('z');
        assert_eq!(finder.chosen(), None);
        finder.pop();
        assert_eq!(finder.counts().0, 2);
    }
}
