//! Invoices as PDF: [`render_invoice_pdf`] draws an [`InvoiceDocument`] on A4 pages (company
//! header, bill-to, number and dates, a table of lines, totals, a stamp such as PAID) with DejaVu
//! Sans embedded, so names in Latin, Greek or Cyrillic script print as written.
//!
//! The document arrives computed: this module prints amounts, it does not add them up, round
//! taxes or decide the status. Drawing is done by hand on `pdf-writer` (no layout engine): text
//! is measured with the font's own advance widths, descriptions wrap at word boundaries, and a
//! table that does not fit continues on the next page under a repeated header. The font is
//! subset to the glyphs drawn (`subsetter`) and the streams are deflated, which keeps a one-page
//! invoice around 20 KiB.
//!
//! Output is deterministic (no creation date, a subset tag derived from the glyphs), so the same
//! document always gives the same bytes.

use std::collections::BTreeMap;

use mpanel_common::{Currency, Money, MoneyError};
use pdf_writer::types::{
    CidFontType, FontFlags, LineCapStyle, SystemInfo, TextRenderingMode, UnicodeCmap,
};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use serde::{Deserialize, Serialize};
use subsetter::GlyphRemapper;
use ttf_parser::{Face, GlyphId};

/// DejaVu Sans 2.37; licence in `assets/fonts/LICENSE`.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_NAME: &str = "DejaVuSans";
/// The name the pages' resources give the font.
const FONT_RESOURCE: Name<'static> = Name(b"F1");

/// An invoice ready to print. Amounts are integers in the currency's minor unit (cents); lines
/// may be negative (a discount or credit), totals are printed as given. JSON uses camelCase,
/// as the API does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceDocument {
    /// `INV-2026-000123`
    pub number: String,
    /// `unpaid`, `paid`, `void`, `refunded`, … (decides the stamp, see [`stamp_for`]).
    pub status: String,
    /// `YYYY-MM-DD`, printed as given.
    pub issued_on: String,
    pub due_on: String,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
    pub company_name: String,
    /// Lines separated by `\n`.
    pub company_address: Option<String>,
    pub company_email: Option<String>,
    pub customer_name: String,
    pub customer_email: String,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: i64,
    pub tax: i64,
    /// `VAT 20%`; "Tax" when absent.
    pub tax_label: Option<String>,
    pub total: i64,
    pub amount_paid: i64,
    pub amount_due: i64,
}

pub use crate::store::billing::InvoiceLine;

impl InvoiceDocument {
    /// `INV-2026-000123.pdf`: the number with anything but letters, digits, `-`, `_` and `.`
    /// replaced, so it is safe as an attachment or download name.
    pub fn file_name(&self) -> String {
        let stem: String = self
            .number
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let stem = stem.trim_matches(['-', '.']);
        if stem.is_empty() {
            "invoice.pdf".to_owned()
        } else {
            format!("{stem}.pdf")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The document itself is wrong: rendering it again will not help.
    #[error("invoice '{number}': currency: {source}")]
    Currency {
        number: String,
        #[source]
        source: MoneyError,
    },
    /// The embedded font could not be read or subset: a defect of this build, not of the
    /// document.
    #[error("the embedded font: {0}")]
    Font(String),
}

/// The stamp drawn across the header, if the status has one: its word and colour.
pub fn stamp_for(status: &str) -> Option<(&'static str, Rgb)> {
    match status.trim().to_ascii_lowercase().as_str() {
        "paid" => Some(("PAID", GREEN)),
        "void" => Some(("VOID", MUTED)),
        "refunded" => Some(("REFUNDED", MUTED)),
        "draft" => Some(("DRAFT", MUTED)),
        "uncollectible" => Some(("UNCOLLECTIBLE", RED)),
        _ => None,
    }
}

/// Draws the invoice: one or more A4 pages, each with a footer "page i of n".
pub fn render_invoice_pdf(doc: &InvoiceDocument) -> Result<Vec<u8>, PdfError> {
    let currency = Currency::parse(&doc.currency).map_err(|source| PdfError::Currency {
        number: doc.number.clone(),
        source,
    })?;
    let face = Face::parse(FONT, 0).map_err(|e| PdfError::Font(e.to_string()))?;
    let mut layout = Layout::new(FontUse::new(face), doc, currency);
    layout.header();
    layout.table();
    layout.totals();
    layout.footers();
    layout.finish()
}

/// An RGB colour, components 0..=1.
pub type Rgb = [f32; 3];
const INK: Rgb = [0.13, 0.13, 0.13];
const MUTED: Rgb = [0.42, 0.42, 0.42];
const RULE: Rgb = [0.80, 0.80, 0.80];
const GREEN: Rgb = [0.11, 0.55, 0.24];
const RED: Rgb = [0.75, 0.14, 0.14];

// A4 in points, and the page's frame.
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
const LEFT: f32 = 50.0;
const RIGHT: f32 = PAGE_WIDTH - 50.0;
const TOP: f32 = PAGE_HEIGHT - 50.0;
/// No body text below this baseline; the footer sits under it.
const BOTTOM: f32 = 70.0;
const FOOTER_Y: f32 = 36.0;
/// Where the labels of the right-hand blocks (number and dates, totals) start.
const LABEL_X: f32 = 345.0;
/// Descriptions wrap at this width; the amount column takes the rest.
const DESCRIPTION_WIDTH: f32 = 340.0;

#[derive(Clone, Copy)]
struct Style {
    size: f32,
    bold: bool,
    color: Rgb,
}

impl Style {
    const fn new(size: f32) -> Style {
        Style {
            size,
            bold: false,
            color: INK,
        }
    }
    const fn bold(self) -> Style {
        Style { bold: true, ..self }
    }
    const fn color(self, color: Rgb) -> Style {
        Style { color, ..self }
    }
    /// Baseline to baseline.
    fn leading(self) -> f32 {
        self.size * 1.35
    }
}

const BODY: Style = Style::new(10.0);
const SMALL: Style = Style::new(8.5).color(MUTED);

/// The embedded font and the glyphs drawn with it so far.
struct FontUse<'a> {
    face: Face<'a>,
    units_per_em: f32,
    /// Old glyph id → id in the subset; ids are handed out as glyphs are first drawn.
    remapper: GlyphRemapper,
    /// Subset glyph id → the character it was drawn for (the ToUnicode map, so text can be
    /// copied and searched).
    chars: BTreeMap<u16, char>,
}

impl<'a> FontUse<'a> {
    fn new(face: Face<'a>) -> Self {
        let units_per_em = f32::from(face.units_per_em().max(1));
        Self {
            face,
            units_per_em,
            remapper: GlyphRemapper::new(),
            chars: BTreeMap::new(),
        }
    }

    /// The glyph for `c`: control characters print as a space, characters the font lacks as
    /// `?` (visible, rather than an empty box or nothing).
    fn glyph(&self, c: char) -> (GlyphId, char) {
        let c = if c.is_control() { ' ' } else { c };
        match self.face.glyph_index(c) {
            Some(g) => (g, c),
            None => (self.face.glyph_index('?').unwrap_or(GlyphId(0)), '?'),
        }
    }

    /// Advance of a glyph in thousandths of the font size, PDF's unit for widths.
    fn advance(&self, glyph: GlyphId) -> f32 {
        f32::from(self.face.glyph_hor_advance(glyph).unwrap_or(0)) * 1000.0 / self.units_per_em
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| self.advance(self.glyph(c).0))
            .sum::<f32>()
            * size
            / 1000.0
    }

    /// The text as two-byte subset glyph ids (Identity-H), noting each glyph as used.
    fn encode(&mut self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let (glyph, shown) = self.glyph(c);
            let id = self.remapper.remap(glyph.0);
            self.chars.entry(id).or_insert(shown);
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    /// Splits `text` into lines no wider than `max`: at spaces where possible, inside a word
    /// only when the word alone is too wide. Line breaks in the text are kept.
    fn wrap(&self, text: &str, size: f32, max: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.trim().split('\n') {
            let mut line = String::new();
            for word in paragraph.split_whitespace() {
                let candidate = if line.is_empty() {
                    word.to_owned()
                } else {
                    format!("{line} {word}")
                };
                if self.width(&candidate, size) <= max {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                for c in word.chars() {
                    line.push(c);
                    if self.width(&line, size) > max && line.chars().count() > 1 {
                        line.pop();
                        lines.push(std::mem::replace(&mut line, c.to_string()));
                    }
                }
            }
            lines.push(line);
        }
        lines
    }
}

struct Layout<'a> {
    font: FontUse<'a>,
    doc: &'a InvoiceDocument,
    currency: Currency,
    pages: Vec<Content>,
    /// Baseline of the next line on the last page.
    y: f32,
}

impl<'a> Layout<'a> {
    fn new(font: FontUse<'a>, doc: &'a InvoiceDocument, currency: Currency) -> Self {
        Self {
            font,
            doc,
            currency,
            pages: vec![Content::new()],
            y: TOP,
        }
    }

    fn money(&self, amount: i64) -> String {
        // Built from the fields rather than `Money::new`: a credit line is negative, and
        // `Display` prints the sign.
        Money {
            amount_minor: amount,
            currency: self.currency,
        }
        .to_string()
    }

    fn text(&mut self, x: f32, y: f32, text: &str, style: Style) {
        let last = self.pages.len() - 1;
        self.text_on(last, x, y, text, style);
    }

    fn text_on(&mut self, page: usize, x: f32, y: f32, text: &str, style: Style) {
        let encoded = self.font.encode(text);
        let [r, g, b] = style.color;
        let page = &mut self.pages[page];
        page.set_fill_rgb(r, g, b);
        if style.bold {
            // One face only: bold is the regular outline stroked in its own colour, which
            // keeps the binary and every PDF one font lighter.
            page.set_stroke_rgb(r, g, b);
            page.set_line_width(style.size * 0.04);
        }
        page.begin_text();
        page.set_font(FONT_RESOURCE, style.size);
        page.set_text_rendering_mode(if style.bold {
            TextRenderingMode::FillStroke
        } else {
            TextRenderingMode::Fill
        });
        page.next_line(x, y);
        page.show(Str(&encoded));
        page.end_text();
    }

    /// The page being drawn on (there is always one).
    fn page(&mut self) -> &mut Content {
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn text_right(&mut self, right: f32, y: f32, text: &str, style: Style) {
        let x = right - self.font.width(text, style.size);
        self.text(x, y, text, style);
    }

    fn rule(&mut self, y: f32, from: f32, to: f32, width: f32, color: Rgb) {
        let [r, g, b] = color;
        let page = self.page();
        page.set_stroke_rgb(r, g, b);
        page.set_line_width(width);
        page.move_to(from, y);
        page.line_to(to, y);
        page.stroke();
    }

    /// Starts a new page when fewer than `height` points are left above the bottom margin.
    fn ensure_room(&mut self, height: f32) -> bool {
        if self.y - height >= BOTTOM {
            return false;
        }
        self.pages.push(Content::new());
        self.y = TOP;
        let title = format!("Invoice {} (continued)", self.doc.number);
        let style = Style::new(11.0).bold();
        self.text(LEFT, self.y, &title, style);
        let doc = self.doc;
        self.text_right(RIGHT, self.y, &doc.company_name, SMALL);
        self.y -= 28.0;
        true
    }

    /// Company on the left, number and dates on the right, then the customer and the stamp.
    fn header(&mut self) {
        let doc = self.doc;
        let mut left = TOP;
        let name_style = Style::new(17.0).bold();
        for line in self
            .font
            .wrap(&doc.company_name, name_style.size, LABEL_X - LEFT - 20.0)
        {
            self.text(LEFT, left, &line, name_style);
            left -= name_style.leading();
        }
        left -= 2.0;
        let detail = BODY.color(MUTED);
        let mut details: Vec<String> = Vec::new();
        for line in doc.company_address.iter().flat_map(|a| a.lines()) {
            details.extend(self.font.wrap(line, detail.size, LABEL_X - LEFT - 20.0));
        }
        details.extend(doc.company_email.iter().cloned());
        for line in details.iter().filter(|l| !l.trim().is_empty()) {
            self.text(LEFT, left, line, detail);
            left -= detail.leading();
        }

        let mut right = TOP;
        self.text_right(RIGHT, right, "INVOICE", Style::new(20.0).bold());
        right -= 26.0;
        let period = match (&doc.period_start, &doc.period_end) {
            (Some(start), Some(end)) => Some(format!("{start} – {end}")),
            (Some(start), None) => Some(format!("from {start}")),
            (None, Some(end)) => Some(format!("until {end}")),
            (None, None) => None,
        };
        let mut facts = vec![
            ("Number", doc.number.clone()),
            ("Issued", doc.issued_on.clone()),
            ("Due", doc.due_on.clone()),
        ];
        if let Some(period) = period {
            facts.push(("Period", period));
        }
        for (label, value) in facts {
            self.text(LABEL_X, right, label, BODY.color(MUTED));
            self.text_right(RIGHT, right, &value, BODY);
            right -= BODY.leading();
        }

        self.y = left.min(right) - 22.0;
        let bill_to_top = self.y;
        self.text(LEFT, self.y, "BILL TO", SMALL.bold());
        self.y -= 15.0;
        let customer = Style::new(11.0).bold();
        for line in self
            .font
            .wrap(&doc.customer_name, customer.size, LABEL_X - LEFT - 20.0)
        {
            self.text(LEFT, self.y, &line, customer);
            self.y -= customer.leading();
        }
        self.text(LEFT, self.y, &doc.customer_email, BODY);
        self.y -= BODY.leading();

        if let Some((word, color)) = stamp_for(&doc.status) {
            self.stamp(word, color, bill_to_top - 30.0);
        }
        self.y -= 24.0;
    }

    /// The status word in a frame, tilted, at the right of the bill-to block.
    fn stamp(&mut self, word: &str, color: Rgb, y: f32) {
        let size = 22.0;
        let width = self.font.width(word, size) + 20.0;
        let height = size + 12.0;
        let x = RIGHT - width - 10.0;
        let encoded = self.font.encode(word);
        let [r, g, b] = color;
        let (sin, cos) = 12f32.to_radians().sin_cos();
        let page = self.page();
        page.save_state();
        page.transform([cos, sin, -sin, cos, x, y]);
        page.set_stroke_rgb(r, g, b);
        page.set_fill_rgb(r, g, b);
        page.set_line_width(2.0);
        page.set_line_cap(LineCapStyle::ButtCap);
        page.rect(0.0, 0.0, width, height);
        page.stroke();
        page.set_line_width(size * 0.04);
        page.begin_text();
        page.set_font(FONT_RESOURCE, size);
        page.set_text_rendering_mode(TextRenderingMode::FillStroke);
        page.next_line(10.0, 6.0 + size * 0.22);
        page.show(Str(&encoded));
        page.end_text();
        page.restore_state();
    }

    fn table_header(&mut self) {
        let style = BODY.bold().color(MUTED);
        self.text(LEFT, self.y, "Description", style);
        self.text_right(RIGHT, self.y, "Amount", style);
        self.rule(self.y - 6.0, LEFT, RIGHT, 0.8, MUTED);
        self.y -= 6.0 + BODY.leading() + 2.0;
    }

    /// One row per line; a description longer than the column wraps, and a row that does not
    /// fit the page continues on the next one (under a repeated header).
    fn table(&mut self) {
        self.ensure_room(BODY.leading() * 3.0);
        self.table_header();
        let doc = self.doc;
        for line in &doc.lines {
            let wrapped = self
                .font
                .wrap(&line.description, BODY.size, DESCRIPTION_WIDTH);
            let amount = self.money(line.amount);
            // Keep short rows whole; a very long one may break between its lines.
            let row = wrapped.len().min(4) as f32 * BODY.leading();
            if self.ensure_room(row) {
                self.table_header();
            }
            for (i, text) in wrapped.iter().enumerate() {
                if i > 0 && self.ensure_room(BODY.leading()) {
                    self.table_header();
                }
                self.text(LEFT, self.y, text, BODY);
                if i == 0 {
                    self.text_right(RIGHT, self.y, &amount, BODY);
                }
                self.y -= BODY.leading();
            }
            self.rule(self.y + BODY.leading() - 5.0, LEFT, RIGHT, 0.4, RULE);
            self.y -= 5.0;
        }
    }

    /// Subtotal, tax, total, paid, due: right-aligned under the table, kept on one page.
    fn totals(&mut self) {
        let doc = self.doc;
        // Label, amount, style, and whether a rule sets the row apart.
        let mut rows: Vec<(String, i64, Style, bool)> =
            vec![("Subtotal".into(), doc.subtotal, BODY, false)];
        if doc.tax != 0 || doc.tax_label.is_some() {
            let label = doc.tax_label.clone().unwrap_or_else(|| "Tax".into());
            rows.push((label, doc.tax, BODY, false));
        }
        rows.push(("Total".into(), doc.total, BODY.bold(), true));
        rows.push(("Amount paid".into(), doc.amount_paid, BODY, false));
        rows.push((
            "Amount due".into(),
            doc.amount_due,
            Style::new(12.0).bold(),
            true,
        ));
        let height: f32 = rows.iter().map(|row| row.2.leading() + 7.0).sum::<f32>() + 20.0;
        self.ensure_room(height);
        self.y -= 8.0;
        for (label, amount, style, ruled) in rows {
            if ruled {
                // A little room, and a rule just above the cap height.
                self.y -= 4.0;
                self.rule(self.y + style.size * 0.76 + 4.0, LABEL_X, RIGHT, 0.6, MUTED);
            }
            let value = self.money(amount);
            for (i, text) in self
                .font
                .wrap(&label, style.size, RIGHT - LABEL_X - 120.0)
                .iter()
                .enumerate()
            {
                self.text(LABEL_X, self.y, text, style);
                if i == 0 {
                    self.text_right(RIGHT, self.y, &value, style);
                }
                self.y -= style.leading();
            }
            self.y -= 3.0;
        }
    }

    /// "INV-… · page i of n" under every page, written once the page count is known.
    fn footers(&mut self) {
        let total = self.pages.len();
        let company = &self.doc.company_name;
        let number = &self.doc.number;
        for index in 0..total {
            let text = format!(
                "{company} · Invoice {number} · Page {} of {total}",
                index + 1
            );
            let x = (PAGE_WIDTH - self.font.width(&text, SMALL.size)) / 2.0;
            self.text_on(index, x.max(LEFT), FOOTER_Y, &text, SMALL);
        }
    }

    fn finish(self) -> Result<Vec<u8>, PdfError> {
        let Layout {
            font, doc, pages, ..
        } = self;
        let subset = subsetter::subset(FONT, 0, &font.remapper)
            .map_err(|e| PdfError::Font(e.to_string()))?;

        let mut next = 0;
        let mut alloc = || {
            next += 1;
            Ref::new(next)
        };
        let catalog = alloc();
        let tree = alloc();
        let info = alloc();
        let type0 = alloc();
        let cid_font = alloc();
        let descriptor = alloc();
        let font_file = alloc();
        let to_unicode = alloc();
        let page_refs: Vec<(Ref, Ref)> = pages.iter().map(|_| (alloc(), alloc())).collect();

        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree)
            .kids(page_refs.iter().map(|(page, _)| *page))
            .count(i32::try_from(page_refs.len()).unwrap_or(i32::MAX));
        let title = format!("Invoice {}", doc.number);
        pdf.document_info(info)
            .title(TextStr(&title))
            .author(TextStr(&doc.company_name))
            .producer(TextStr("mpanel"));

        let base_font = format!("{}+{FONT_NAME}", subset_tag(&font.remapper));
        let system_info = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };
        pdf.type0_font(type0)
            .base_font(Name(base_font.as_bytes()))
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid_font)
            .to_unicode(to_unicode);
        let widths: Vec<f32> = font
            .remapper
            .remapped_gids()
            .map(|old| font.advance(GlyphId(old)))
            .collect();
        {
            let mut cid = pdf.cid_font(cid_font);
            cid.subtype(CidFontType::Type2)
                .base_font(Name(base_font.as_bytes()))
                .system_info(system_info)
                .font_descriptor(descriptor)
                .cid_to_gid_map_predefined(Name(b"Identity"));
            cid.widths().consecutive(0, widths);
        }
        let scale = |v: i16| f32::from(v) * 1000.0 / font.units_per_em;
        let bbox = font.face.global_bounding_box();
        pdf.font_descriptor(descriptor)
            .name(Name(base_font.as_bytes()))
            .flags(FontFlags::SYMBOLIC)
            .bbox(Rect::new(
                scale(bbox.x_min),
                scale(bbox.y_min),
                scale(bbox.x_max),
                scale(bbox.y_max),
            ))
            .italic_angle(font.face.italic_angle())
            .ascent(scale(font.face.ascender()))
            .descent(scale(font.face.descender()))
            .cap_height(scale(
                font.face
                    .capital_height()
                    .unwrap_or_else(|| font.face.ascender()),
            ))
            .stem_v(80.0)
            .font_file2(font_file);
        pdf.stream(font_file, &deflate(&subset))
            .filter(Filter::FlateDecode)
            .pair(
                Name(b"Length1"),
                i32::try_from(subset.len()).unwrap_or(i32::MAX),
            );
        let mut cmap = UnicodeCmap::new(Name(b"Custom"), system_info);
        for (glyph, c) in &font.chars {
            cmap.pair(*glyph, *c);
        }
        let cmap = cmap.finish();
        pdf.cmap(to_unicode, &cmap)
            .name(Name(b"Custom"))
            .system_info(system_info);

        for ((page_ref, content_ref), content) in page_refs.iter().zip(pages) {
            let mut page = pdf.page(*page_ref);
            page.parent(tree)
                .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
                .contents(*content_ref);
            page.resources().fonts().pair(FONT_RESOURCE, type0);
            page.finish();
            pdf.stream(*content_ref, &deflate(&content.finish()))
                .filter(Filter::FlateDecode);
        }
        Ok(pdf.finish())
    }
}

/// Streams are deflated: a one-page invoice shrinks to about a third.
fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// Six capital letters naming the subset (PDF requires one per subset font): derived from the
/// glyphs, so equal documents stay byte-identical.
fn subset_tag(remapper: &GlyphRemapper) -> String {
    // FNV-1a: any stable spread will do, this is not a security boundary.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for glyph in remapper.remapped_gids() {
        for byte in glyph.to_be_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (0..6)
        .map(|i| char::from(b'A' + ((hash >> (i * 8)) % 26) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(lines: usize) -> InvoiceDocument {
        InvoiceDocument {
            number: "INV-2026-000123".into(),
            status: "paid".into(),
            issued_on: "2026-03-01".into(),
            due_on: "2026-03-15".into(),
            period_start: Some("2026-03-01".into()),
            period_end: Some("2026-03-31".into()),
            currency: "EUR".into(),
            company_name: "Acme Hosting GmbH".into(),
            company_address: Some("Hauptstraße 5\n10115 Berlin\nGermany".into()),
            company_email: Some("billing@acme.example".into()),
            customer_name: "Zoë Łukasik-Müller".into(),
            customer_email: "zoe@example.org".into(),
            lines: (0..lines)
                .map(|i| InvoiceLine {
                    description: format!("Web hosting, plan Business, site{i}.example"),
                    amount: 1250,
                })
                .collect(),
            subtotal: 1250 * lines as i64,
            tax: 250 * lines as i64,
            tax_label: Some("VAT 20%".into()),
            total: 1500 * lines as i64,
            amount_paid: 1500 * lines as i64,
            amount_due: 0,
        }
    }

    fn parsed(bytes: &[u8]) -> lopdf::Document {
        lopdf::Document::load_mem(bytes).expect("a PDF that parses")
    }

    fn all_text(document: &lopdf::Document) -> String {
        let pages: Vec<u32> = document.get_pages().keys().copied().collect();
        document.extract_text(&pages).expect("text extraction")
    }

    #[test]
    fn an_invoice_is_a_pdf_whose_text_holds_the_number_the_accented_customer_and_the_totals() {
        let bytes = render_invoice_pdf(&sample(3)).unwrap();
        assert!(bytes.starts_with(b"%PDF-"));
        let document = parsed(&bytes);
        assert_eq!(document.get_pages().len(), 1);
        let text = all_text(&document);
        for needle in [
            "INV-2026-000123",
            "Zoë Łukasik-Müller",
            "zoe@example.org",
            "Hauptstraße 5",
            "2026-03-01 – 2026-03-31",
            "Web hosting, plan Business, site2.example",
            "12.50 EUR",
            "Subtotal",
            "37.50 EUR",
            "VAT 20%",
            "7.50 EUR",
            "45.00 EUR",
            "Amount due",
            "0.00 EUR",
            "PAID",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_font_is_embedded_as_a_subset_with_a_unicode_map() {
        let bytes = render_invoice_pdf(&sample(1)).unwrap();
        let document = parsed(&bytes);
        let fonts: Vec<&lopdf::Dictionary> = document
            .objects
            .values()
            .filter_map(|o| o.as_dict().ok())
            .filter(|d| d.get(b"Type").and_then(|t| t.as_name()).ok() == Some(b"Font"))
            .collect();
        let type0 = fonts
            .iter()
            .find(|d| d.get(b"Subtype").and_then(|t| t.as_name()).ok() == Some(b"Type0"))
            .expect("a Type0 font");
        let base = type0.get(b"BaseFont").unwrap().as_name().unwrap();
        assert!(base.ends_with(b"+DejaVuSans"), "{base:?}");
        assert!(type0.has(b"ToUnicode"));
        let file = document
            .objects
            .values()
            .filter_map(|o| o.as_stream().ok())
            .find(|s| s.dict.has(b"Length1"))
            .expect("an embedded font program");
        // The whole font is 740 KiB; the subset must be a small fraction of it.
        assert!(
            file.content.len() < 40_000,
            "subset is {} bytes",
            file.content.len()
        );
        assert!(bytes.len() < 40_000, "the PDF is {} bytes", bytes.len());
    }

    #[test]
    fn sixty_lines_flow_onto_a_second_page_with_every_line_and_the_totals_present() {
        let doc = sample(60);
        let bytes = render_invoice_pdf(&doc).unwrap();
        let document = parsed(&bytes);
        let pages = document.get_pages().len();
        assert!(pages > 1, "{pages} page(s)");
        let text = all_text(&document);
        for i in 0..60 {
            let needle = format!("site{i}.example");
            assert!(text.contains(&needle), "{needle} missing");
        }
        assert!(text.contains("(continued)"));
        assert!(text.contains(&format!("Page {pages} of {pages}")));
        // The totals come once, on the last page.
        let last = *document.get_pages().keys().max().unwrap();
        let last_text = document.extract_text(&[last]).unwrap();
        assert!(last_text.contains("Amount due"), "{last_text}");
        assert!(last_text.contains("900.00 EUR"), "{last_text}");
    }

    #[test]
    fn a_long_description_wraps_within_its_column_and_keeps_every_word() {
        let mut doc = sample(1);
        let words: Vec<String> = (0..80).map(|i| format!("word{i}")).collect();
        doc.lines[0].description = words.join(" ");
        let bytes = render_invoice_pdf(&doc).unwrap();
        let text = all_text(&parsed(&bytes));
        for word in &words {
            assert!(text.contains(word.as_str()), "{word} missing");
        }
        let face = Face::parse(FONT, 0).unwrap();
        let font = FontUse::new(face);
        let wrapped = font.wrap(&doc.lines[0].description, BODY.size, DESCRIPTION_WIDTH);
        assert!(wrapped.len() > 3, "{wrapped:?}");
        for line in &wrapped {
            assert!(font.width(line, BODY.size) <= DESCRIPTION_WIDTH, "{line}");
        }
        assert_eq!(wrapped.join(" "), doc.lines[0].description);
    }

    #[test]
    fn a_word_wider_than_the_column_is_broken_inside() {
        let font = FontUse::new(Face::parse(FONT, 0).unwrap());
        let long = "x".repeat(200);
        let wrapped = font.wrap(&long, BODY.size, 100.0);
        assert!(wrapped.len() > 1);
        assert_eq!(wrapped.concat(), long);
        assert!(wrapped.iter().all(|l| font.width(l, BODY.size) <= 100.0));
    }

    #[test]
    fn a_description_longer_than_a_page_continues_on_the_next() {
        let mut doc = sample(1);
        doc.lines[0].description = (0..120)
            .map(|i| format!("Item {i} of a very long list"))
            .collect::<Vec<_>>()
            .join("\n");
        let document = parsed(&render_invoice_pdf(&doc).unwrap());
        assert!(document.get_pages().len() > 1);
        let text = all_text(&document);
        assert!(text.contains("Item 0 of") && text.contains("Item 119 of"));
    }

    #[test]
    fn unpaid_invoices_carry_no_stamp_and_void_ones_say_so() {
        let mut doc = sample(1);
        doc.status = "unpaid".into();
        doc.amount_paid = 0;
        doc.amount_due = doc.total;
        let text = all_text(&parsed(&render_invoice_pdf(&doc).unwrap()));
        assert!(!text.contains("PAID"), "{text}");
        assert!(text.contains("15.00 EUR"));
        doc.status = "void".into();
        let text = all_text(&parsed(&render_invoice_pdf(&doc).unwrap()));
        assert!(text.contains("VOID"));
    }

    #[test]
    fn zero_decimal_currencies_and_credit_lines_print_as_money() {
        let mut doc = sample(1);
        doc.currency = "jpy".into();
        doc.lines = vec![
            InvoiceLine {
                description: "Hosting".into(),
                amount: 1500,
            },
            InvoiceLine {
                description: "Loyalty credit".into(),
                amount: -300,
            },
        ];
        let text = all_text(&parsed(&render_invoice_pdf(&doc).unwrap()));
        assert!(text.contains("1500 JPY"), "{text}");
        assert!(text.contains("-300 JPY"), "{text}");
    }

    #[test]
    fn characters_the_font_lacks_print_as_a_question_mark() {
        let mut doc = sample(1);
        doc.customer_name = "Ann 山田".into();
        let text = all_text(&parsed(&render_invoice_pdf(&doc).unwrap()));
        assert!(text.contains("Ann ??"), "{text}");
    }

    #[test]
    fn a_bad_currency_is_a_document_error() {
        let mut doc = sample(1);
        doc.currency = "EURO".into();
        let err = render_invoice_pdf(&doc).unwrap_err();
        assert!(matches!(err, PdfError::Currency { .. }), "{err}");
        assert!(err.to_string().contains("INV-2026-000123"), "{err}");
    }

    #[test]
    fn the_same_document_gives_the_same_bytes() {
        let doc = sample(5);
        assert_eq!(
            render_invoice_pdf(&doc).unwrap(),
            render_invoice_pdf(&doc).unwrap()
        );
    }

    #[test]
    fn json_is_camel_case_and_round_trips() {
        let doc = sample(1);
        let json = serde_json::to_value(&doc).unwrap();
        for key in [
            "issuedOn",
            "dueOn",
            "periodStart",
            "companyName",
            "customerEmail",
            "taxLabel",
            "amountPaid",
            "amountDue",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        let back: InvoiceDocument = serde_json::from_value(json).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        let mut doc = sample(0);
        assert_eq!(doc.file_name(), "INV-2026-000123.pdf");
        doc.number = "../INV 7/\"x\"".into();
        assert_eq!(doc.file_name(), "INV-7--x.pdf");
        doc.number = "///".into();
        assert_eq!(doc.file_name(), "invoice.pdf");
    }
}
