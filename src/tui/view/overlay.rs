//! What is drawn over a screen: the help, a fuzzy finder, a parameter editor.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, List, ListItem, ListState, Paragraph, Row, Table};

use super::panel;
use crate::tui::app::{App, Overlay};

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    match &app.overlay {
        None => {}
        Some(Overlay::Help) => {
            let keys = app.keys.help(app.screen);
            let height = (keys.len() as u16 + 3).min(area.height);
            let popup = centred(area, 64.min(area.width), height);
            frame.render_widget(Clear, popup);
            let rows: Vec<Row> = keys
                .into_iter()
                .map(|(keys, help)| {
                    Row::new([Span::styled(keys, app.theme.accent), Span::raw(help)])
                })
                .collect();
            let title = format!(" keys on {} · any key closes ", app.screen.title());
            let table = Table::new(rows, [Constraint::Length(18), Constraint::Fill(1)])
                .block(panel(app, title));
            frame.render_widget(table, popup);
        }
        Some(Overlay::Finder(finder)) => {
            let popup = centred(area, 70.min(area.width), 20.min(area.height));
            frame.render_widget(Clear, popup);
            let (shown, all) = finder.counts();
            let block = panel(
                app,
                format!(
                    " {} · {shown}/{all} · enter picks, esc closes ",
                    finder.title
                ),
            );
            let inner = block.inner(popup);
            frame.render_widget(block, popup);
            let [query, list] =
                Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
            let prompt = Line::from(vec![
                Span::styled("> ", app.theme.accent),
                Span::raw(format!("{}▏", finder.query)),
            ]);
            frame.render_widget(Paragraph::new(prompt), query);
            let items: Vec<ListItem> = finder
                .shown()
                .map(|(label, _)| ListItem::new(label.to_string()))
                .collect();
            let mut state = ListState::default().with_selected(Some(finder.selected));
            frame.render_stateful_widget(
                List::new(items).highlight_style(app.theme.selected),
                list,
                &mut state,
            );
        }
        Some(Overlay::Edit { param, text }) => {
            let popup = centred(area, 50.min(area.width), 3);
            frame.render_widget(Clear, popup);
            let block = panel(app, format!(" --{param} · enter sets, esc keeps "));
            frame.render_widget(Paragraph::new(format!("{text}▏")).block(block), popup);
        }
    }
}

fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    cell
}
