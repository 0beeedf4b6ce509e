//! The index schema, versioned: a change to fields, tokenizers or what a document holds bumps
//! [`SCHEMA_VERSION`], and an index written by another version is rebuilt from the views.

use std::hash::{Hash, Hasher};

use shopflow_views::{ProductRow, TopSellerRow};
use tantivy::schema::{
    Facet, FacetOptions, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{Index, TantivyDocument};

/// Bump on any change to the schema or to how a product becomes a document.
/// 2: rating, rating count and creation time; the unstemmed `words` field; no positions;
/// brands counted from a fast brand id column instead of a facet field.
pub const SCHEMA_VERSION: u32 = 2;

/// English text: split on non-alphanumerics, lowercase, fold accents, stem (plurals).
pub const EN: &str = "shopflow_en";
/// The same without stemming: what typos and prefixes are matched against. A stem can be far
/// from the word a shopper misspells ("insulated" is stemmed to "insul", three edits from
/// "insulatd"), so a typo is measured against the word as written.
pub const RAW: &str = "shopflow_raw";

/// The fields, resolved once.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    pub id: Field,
    pub name: Field,
    pub description: Field,
    pub brand: Field,
    pub category: Field,
    pub brand_id: Field,
    pub category_facet: Field,
    pub price: Field,
    pub currency: Field,
    pub stock: Field,
    pub units: Field,
    /// Mean stars (absent without reviews, so a minimum-rating filter leaves those out).
    pub rating: Field,
    pub rating_count: Field,
    /// Event time of `product.created`, ms since the epoch.
    pub created_at: Field,
    /// Name, brand and category unstemmed ([`RAW`]): typos and prefixes match here.
    pub words: Field,
    /// A stable hash of the product id: the tie-breaker of every sort, so cursors are exact.
    pub tie: Field,
    /// A hash of everything the document holds: a reopened index re-indexes only what differs.
    pub content: Field,
}

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |stored: bool| {
        // Frequencies for BM25; no positions: no query here is a phrase (snippets re-analyse
        // the stored text), and positions were a large share of indexing time.
        let indexing = TextFieldIndexing::default().set_tokenizer(EN).set_index_option(IndexRecordOption::WithFreqs);
        let options = TextOptions::default().set_indexing_options(indexing);
        if stored {
            options.set_stored()
        } else {
            options
        }
    };
    let fast_indexed = NumericOptions::default().set_fast().set_indexed();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED | FAST),
        name: b.add_text_field("name", text(true)),
        description: b.add_text_field("description", text(true)),
        brand: b.add_text_field("brand", text(true)),
        category: b.add_text_field("category", text(true)),
        // Fast: brand facet counts read its column (see `facets`).
        brand_id: b.add_text_field("brand_id", STRING | STORED | FAST),
        category_facet: b.add_facet_field("category_facet", FacetOptions::default().set_stored()),
        price: b.add_i64_field("price", fast_indexed.clone().set_stored()),
        currency: b.add_text_field("currency", STORED),
        stock: b.add_i64_field("stock", fast_indexed.set_stored()),
        units: b.add_u64_field("units", FAST | STORED),
        rating: b.add_f64_field("rating", NumericOptions::default().set_indexed().set_stored()),
        rating_count: b.add_u64_field("rating_count", STORED),
        created_at: b.add_i64_field("created_at", FAST | STORED),
        // Matched as a set of words (fuzzy and prefix scores are constant): no frequencies.
        words: b.add_text_field(
            "words",
            TextOptions::default().set_indexing_options(TextFieldIndexing::default().set_tokenizer(RAW).set_index_option(IndexRecordOption::Basic)),
        ),
        tie: b.add_u64_field("tie", FAST),
        content: b.add_u64_field("content", FAST),
    };
    (b.build(), fields)
}

/// Registers the tokenizers the schema names; needed on every opened index. Returns the English
/// analyzer it registered: queries clone it, so they share its stem memo with indexing and
/// snippets.
pub fn register_tokenizers(index: &Index) -> TextAnalyzer {
    let english = english();
    index.tokenizers().register(EN, english.clone());
    index.tokenizers().register(RAW, raw());
    english
}

pub fn english() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(crate::stem::CachedEnglishStemmer::default())
        .build()
}

pub fn raw() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser).filter(AsciiFoldingFilter).build()
}

/// The category as a facet path: a category named `Electronics > Audio` (or `Electronics/Audio`)
/// is `/Electronics/Audio`, so filtering on `Electronics` finds everything below it. A category
/// without a name yet is its id.
pub fn category_path(row: &ProductRow) -> Facet {
    let name = row.category_name.as_deref().unwrap_or(row.category_id.as_str());
    let parts: Vec<&str> = name.split(['>', '/']).map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        Facet::from_path([row.category_id.as_str()])
    } else {
        Facet::from_path(parts)
    }
}

/// The category path as the caller writes it in a filter (`Electronics/Audio` or
/// `Electronics > Audio`), or `None` if it names nothing.
pub fn parse_category(path: &str) -> Option<Facet> {
    let parts: Vec<&str> = path.split(['>', '/']).map(str::trim).filter(|p| !p.is_empty()).collect();
    (!parts.is_empty()).then(|| Facet::from_path(parts))
}

/// A hash that is the same on every replica and every run (unlike `RandomState`).
pub fn stable_hash(value: impl Hash) -> u64 {
    // FNV-1a over what `Hash` feeds in: stable for the std types used here.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    value.hash(&mut h);
    h.finish()
}

/// The document for a product, with its top-seller units (0 when it never sold). `content` is
/// its [`content_hash`], which the caller has computed already to see whether it changed.
pub fn document(fields: &Fields, row: &ProductRow, top: Option<&TopSellerRow>, content: u64) -> TantivyDocument {
    let units = units(top);
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.id, row.product_id.as_str());
    doc.add_text(fields.name, &row.name);
    doc.add_text(fields.description, &row.description);
    let brand = row.brand_name.as_deref().unwrap_or(row.brand_id.as_str());
    doc.add_text(fields.brand, brand);
    let category = category_path(row);
    let category_words = category.to_path().join(" ");
    doc.add_text(fields.words, &row.name);
    doc.add_text(fields.words, brand);
    doc.add_text(fields.words, &category_words);
    doc.add_text(fields.category, category_words);
    doc.add_text(fields.brand_id, row.brand_id.as_str());
    doc.add_facet(fields.category_facet, category);
    doc.add_i64(fields.price, row.price.amount_minor);
    doc.add_text(fields.currency, row.price.currency.as_str());
    doc.add_i64(fields.stock, row.stock);
    doc.add_u64(fields.units, units);
    if let Some(stars) = row.rating_avg {
        doc.add_f64(fields.rating, stars.get());
    }
    doc.add_u64(fields.rating_count, u64::from(row.rating_count));
    doc.add_i64(fields.created_at, row.created_at);
    doc.add_u64(fields.tie, stable_hash(row.product_id.as_str()));
    doc.add_u64(fields.content, content);
    doc
}

/// Units sold as the document stores them.
pub fn units(top: Option<&TopSellerRow>) -> u64 {
    top.map_or(0, |t| t.units.max(0) as u64)
}

/// What the document of a product depends on, hashed.
pub fn content_hash(row: &ProductRow, units: u64) -> u64 {
    stable_hash((SCHEMA_VERSION, row, units))
}
