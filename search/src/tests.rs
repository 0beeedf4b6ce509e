//! The index against real views: changes applied to the views become searchable, and the
//! query features behave as documented.

use std::sync::Arc;
use std::time::Duration;

use shopflow_events::{Id, Money};
use shopflow_ingest::Position;
use shopflow_views::{ProductRow, ProgressReport, TopSellerRow, ViewUpdate, Views};

use super::*;

fn row(id: &str, name: &str, description: &str, category: &str, brand: &str, price: i64) -> ProductRow {
    ProductRow {
        product_id: id.into(),
        name: name.into(),
        description: description.into(),
        price: Money::new(price, "EUR"),
        sku: String::new(),
        category_id: Id::from(category.to_lowercase().replace([' ', '>', '/'], "-").as_str()),
        category_name: Some(category.into()),
        brand_id: Id::from(brand.to_lowercase().as_str()),
        brand_name: Some(brand.into()),
        supplier_id: "sup".into(),
        supplier_name: None,
        stock: 0,
        created_at: 0,
        rating_avg: None,
        rating_count: 0,
    }
}

fn catalog() -> Vec<ProductRow> {
    vec![
        row("p1", "Electric Kettle", "Boils water fast, stainless steel.", "Kitchen > Appliances", "Acme", 2999),
        row("p2", "Glass Teapot", "A teapot for loose leaf tea.", "Kitchen > Tableware", "Northwind", 1999),
        row("p3", "Wireless Headphones", "Noise cancelling over-ear headphones.", "Electronics > Audio", "Globex", 12999),
        row("p4", "Bluetooth Speaker", "Portable speaker with deep bass.", "Electronics > Audio", "Acme", 4999),
        row("p5", "Leather Sofa", "Three seat sofa in brown leather.", "Furniture", "Initech", 89999),
        row("p6", "Camping Tent", "Two person tent, waterproof.", "Outdoor", "Umbrella", 15999),
        row("p7", "Stovetop Kettle", "Whistling kettle for gas and induction.", "Kitchen > Appliances", "Northwind", 3499),
    ]
}

struct Fixture {
    views: Arc<Views>,
    index: Arc<SearchIndex>,
    offset: u64,
}

impl Fixture {
    fn new() -> Self {
        Self::with(SearchConfig::default())
    }

    fn with(config: SearchConfig) -> Self {
        let views = Arc::new(Views::new());
        let index = SearchIndex::open(config, views.clone()).unwrap();
        Self { views, index, offset: 0 }
    }

    /// Applies updates as the pipeline would (rows, then progress) and waits until the index
    /// reflects them.
    async fn apply(&mut self, updates: Vec<ViewUpdate>) {
        self.views.apply(updates);
        self.offset += 1;
        let position = Position::new("catalog", 0, self.offset);
        self.views.progress.report(ProgressReport { worker: 0, peers: 1, frontier: self.offset, offsets: vec![position.clone()] });
        let written = Position::new("catalog", 0, self.offset - 1);
        self.index.applied().wait_for(&[written], Duration::from_secs(10)).await.expect("the index applies the change");
    }

    async fn load(&mut self, rows: Vec<ProductRow>) {
        self.apply(rows.into_iter().map(|r| ViewUpdate::Product { key: r.product_id.clone(), row: Some(r) }).collect()).await;
    }

    fn ids(&self, text: &str) -> Vec<String> {
        self.search(SearchRequest { text: text.into(), limit: 20, ..Default::default() }).hits.into_iter().map(|h| h.id).collect()
    }

    fn search(&self, request: SearchRequest) -> SearchResults {
        self.index.search(&request).unwrap()
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_product_is_found_changed_and_gone_as_the_views_change() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    assert_eq!(f.ids("teapot"), ["p2"]);

    let mut renamed = catalog()[1].clone();
    renamed.name = "Porcelain Pitcher".into();
    renamed.description = "For milk.".into();
    f.load(vec![renamed]).await;
    assert!(f.ids("teapot").is_empty(), "the old name is gone");
    assert_eq!(f.ids("pitcher"), ["p2"]);

    f.apply(vec![ViewUpdate::Product { key: "p2".into(), row: None }]).await;
    assert!(f.ids("pitcher").is_empty());
    assert_eq!(f.index.num_docs(), 6);
}

#[tokio::test]
async fn stemming_typos_by_length_and_the_last_word_as_a_prefix() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    assert_eq!(sorted(f.ids("kettles ")), ["p1", "p7"], "plural finds singular");
    assert_eq!(f.ids("headphone "), ["p3"], "singular finds plural");
    assert_eq!(sorted(f.ids("kettel ")), ["p1", "p7"], "one typo in six letters");
    assert_eq!(f.ids("haedphnoes "), ["p3"], "two typos from nine letters");
    assert!(f.ids("snfa ").is_empty(), "no typo allowed in four letters");
    assert_eq!(f.ids("wireless headph"), ["p3"], "the last word is a prefix while typing");
    assert!(f.ids("wireless headph ").is_empty(), "not once a space ends it");
    assert_eq!(f.ids("a tent for camping "), ["p6"], "glue words are dropped");
}

#[tokio::test]
async fn typo_rules_are_configurable() {
    let config = SearchConfig { typos: TypoRules { one_typo_from: 100, two_typos_from: 200 }, ..Default::default() };
    let mut f = Fixture::with(config);
    f.load(catalog()).await;
    assert!(f.ids("kettel ").is_empty());
    assert_eq!(sorted(f.ids("kettle ")), ["p1", "p7"]);
}

#[tokio::test]
async fn synonyms_match_the_other_words_of_their_group() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    assert!(f.ids("couch ").is_empty());
    f.index.set_synonyms(Synonyms::new(&[vec!["couch".into(), "sofa".into()]]));
    assert_eq!(f.ids("couch "), ["p5"]);
}

#[tokio::test]
async fn name_matches_rank_above_description_matches() {
    let mut f = Fixture::new();
    f.load(vec![
        row("d", "Travel Mug", "Keeps a kettle's worth of tea warm.", "Kitchen", "Acme", 999),
        row("n", "Kettle", "Boils water.", "Kitchen", "Acme", 999),
    ])
    .await;
    assert_eq!(f.ids("kettle "), ["n", "d"]);
}

#[tokio::test]
async fn filters_narrow_and_facets_count_what_matches() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    let filtered = |f: &Fixture, filters: Filters| {
        sorted(f.search(SearchRequest { filters, limit: 20, ..Default::default() }).hits.into_iter().map(|h| h.id).collect())
    };
    assert_eq!(filtered(&f, Filters { category: Some("Kitchen".into()), ..Default::default() }), ["p1", "p2", "p7"], "a category includes its subcategories");
    assert_eq!(filtered(&f, Filters { category: Some("Kitchen/Appliances".into()), ..Default::default() }), ["p1", "p7"]);
    assert_eq!(filtered(&f, Filters { brands: vec!["acme".into(), "globex".into()], ..Default::default() }), ["p1", "p3", "p4"]);
    assert_eq!(filtered(&f, Filters { price_min: Some(3000), price_max: Some(15999), ..Default::default() }), ["p3", "p4", "p6", "p7"]);
    assert!(f.index.search(&SearchRequest { filters: Filters { price_min: Some(5), price_max: Some(4), ..Default::default() }, limit: 5, ..Default::default() }).is_err());

    // Stock comes with the stock view; only p4 has some.
    let stock = shopflow_views::StockRow { product_id: "p4".into(), warehouse_id: "w".into(), warehouse_name: None, quantity: 3 };
    f.apply(vec![ViewUpdate::Stock { key: ("p4".into(), "w".into()), row: Some(stock) }]).await;
    assert_eq!(filtered(&f, Filters { in_stock: true, ..Default::default() }), ["p4"]);

    let all = f.search(SearchRequest { limit: 1, facets: true, ..Default::default() });
    assert_eq!(all.total, 7);
    let facets = all.facets.expect("asked for");
    let count = |counts: &[FacetCount], value: &str| counts.iter().find(|c| c.value == value).map(|c| c.count);
    assert_eq!(count(&facets.category, "Kitchen"), Some(3));
    assert_eq!(count(&facets.category, "Electronics"), Some(2));
    assert_eq!(count(&facets.brand, "acme"), Some(2));
    let kitchen =
        f.search(SearchRequest { filters: Filters { category: Some("Kitchen".into()), ..Default::default() }, limit: 1, facets: true, ..Default::default() });
    let categories = kitchen.facets.expect("asked for").category;
    assert_eq!(categories.iter().map(|c| (c.value.as_str(), c.count)).collect::<Vec<_>>(), [("Kitchen/Appliances", 2), ("Kitchen/Tableware", 1)]);
    assert!(f.search(SearchRequest { limit: 1, ..Default::default() }).facets.is_none(), "not counted unless asked");
}

#[tokio::test]
async fn a_minimum_rating_keeps_products_rated_at_least_that() {
    let mut f = Fixture::new();
    let rated = |mut row: ProductRow, sum: u64, count: u32| {
        row.rating_avg = shopflow_views::Stars::mean(sum, count);
        row.rating_count = count;
        row
    };
    let rows = catalog();
    f.load(vec![rated(rows[0].clone(), 9, 2), rated(rows[1].clone(), 4, 1), rated(rows[2].clone(), 14, 3), rows[3].clone()]).await;
    let at_least = |f: &Fixture, min: f64| {
        let filters = Filters { min_rating: Some(min), ..Default::default() };
        sorted(f.search(SearchRequest { filters, limit: 20, ..Default::default() }).hits.into_iter().map(|h| h.id).collect())
    };
    assert_eq!(at_least(&f, 4.5), ["p1", "p3"], "4.5 and 4.67");
    assert_eq!(at_least(&f, 4.0), ["p1", "p2", "p3"], "the bound is inclusive");
    assert_eq!(at_least(&f, 0.0), ["p1", "p2", "p3"], "never reviewed is not rated zero: it is left out");
    assert!(at_least(&f, 5.0).is_empty());
    let hit = f.search(SearchRequest { text: "headphones ".into(), limit: 1, ..Default::default() }).hits.remove(0);
    assert_eq!((hit.rating_avg, hit.rating_count), (Some(4.67), 3));
    for bad in [-0.5, 5.5, f64::NAN] {
        let filters = Filters { min_rating: Some(bad), ..Default::default() };
        let result = f.index.search(&SearchRequest { filters, limit: 5, ..Default::default() });
        assert!(matches!(result, Err(SearchError::BadRequest { field: "min_rating", .. })), "{bad}");
    }
}

#[tokio::test]
async fn newest_sorts_by_creation_time_with_exact_cursors() {
    let mut f = Fixture::new();
    // Created one second apart, p7 last; p3 and p4 at the same millisecond (the id hash breaks the tie).
    let rows: Vec<ProductRow> = catalog()
        .into_iter()
        .zip([0, 1_000, 2_000, 2_000, 3_000, 4_000, 5_000])
        .map(|(mut row, after)| {
            row.created_at = 1_764_000_000_000 + after;
            row
        })
        .collect();
    let mut expected: Vec<(i64, String)> = rows.iter().map(|r| (r.created_at, r.product_id.to_string())).collect();
    f.load(rows).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = f.search(SearchRequest { sort: Sort::Newest, limit: 2, cursor: cursor.clone(), ..Default::default() });
        seen.extend(page.hits.into_iter().map(|h| (h.created_at, h.id)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "every product once: {seen:?}");
    expected.sort_by_key(|e| std::cmp::Reverse(e.0));
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), expected.iter().map(|e| e.0).collect::<Vec<_>>(), "newest first");
    assert_eq!(seen[0].1, "p7");
}

#[tokio::test]
async fn a_typo_is_measured_against_the_word_as_written_not_its_stem() {
    let mut f = Fixture::new();
    f.load(vec![
        row("i", "Insulated Travel Mug", "Keeps coffee hot.", "Kitchen", "Acme", 1999),
        row("c", "Ceramic Travel Mug", "Dishwasher safe.", "Kitchen", "Acme", 1299),
    ])
    .await;
    // "insulated" is indexed as the stem "insul": three edits from "insulatd".
    assert_eq!(f.ids("insulatd mug "), ["i"]);
    assert_eq!(f.ids("travel insulat"), ["i"], "a prefix of the word, longer than its stem");
    assert_eq!(f.ids("insulated mug ")[0], "i");
}

#[tokio::test]
async fn a_word_the_index_has_is_matched_exactly_and_near_words_only_when_that_finds_nothing() {
    let mut f = Fixture::new();
    f.load(vec![
        row("exact", "Speaker Cable", "For any hifi.", "Audio", "Acme", 999),
        row("plural", "Speakers Stand", "Holds two.", "Audio", "Acme", 999),
        row("typo", "Spaeker Grill", "A misspelt listing.", "Audio", "Acme", 999),
    ])
    .await;
    assert_eq!(sorted(f.ids("speaker ")), ["exact", "plural"], "a known word is not widened to its near misses");
    assert_eq!(sorted(f.ids("speker ")), ["exact", "typo"], "an unknown one is (typos count against the word as written)");
    assert_eq!(f.ids("grill speaker "), ["typo"], "nothing exact: searched again with typos");
    assert_eq!(sorted(f.ids("speak")), ["exact", "plural"], "a prefix the index has is not widened either");
}

#[tokio::test]
async fn sorts_and_cursor_pages_cover_every_hit_once_in_order() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    let top = |id: &str, units| ViewUpdate::TopSeller { key: id.into(), row: Some(TopSellerRow { product_id: id.into(), category_id: None, units }) };
    f.apply(vec![top("p6", 50), top("p2", 10), top("p3", 30)]).await;

    for (sort, expected) in [
        (Sort::PriceAsc, vec!["p2", "p1", "p7", "p4", "p3", "p6", "p5"]),
        (Sort::PriceDesc, vec!["p5", "p6", "p3", "p4", "p7", "p1", "p2"]),
    ] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = f.search(SearchRequest { sort, limit: 2, cursor: cursor.clone(), ..Default::default() });
            seen.extend(page.hits.into_iter().map(|h| h.id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{sort:?}");
    }
    let popular = f.search(SearchRequest { sort: Sort::Popularity, limit: 3, ..Default::default() });
    assert_eq!(popular.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["p6", "p3", "p2"]);
    assert_eq!(popular.hits[0].units_sold, 50);

    let relevance = f.search(SearchRequest { text: "kettle ".into(), limit: 1, ..Default::default() });
    let next = f.search(SearchRequest { text: "kettle ".into(), limit: 1, cursor: relevance.next_cursor.clone(), ..Default::default() });
    assert_eq!(sorted(vec![relevance.hits[0].id.clone(), next.hits[0].id.clone()]), ["p1", "p7"]);
    assert!(next.next_cursor.is_none());
    let wrong = f.index.search(&SearchRequest { sort: Sort::PriceAsc, limit: 1, cursor: relevance.next_cursor, ..Default::default() });
    assert!(matches!(wrong, Err(SearchError::BadRequest { field: "cursor", .. })));
}

#[tokio::test]
async fn hits_carry_highlighted_snippets() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    let hit = &f.search(SearchRequest { text: "teapot ".into(), limit: 1, ..Default::default() }).hits[0];
    assert_eq!(hit.highlight.name, "Glass <em>Teapot</em>");
    assert!(hit.highlight.description.contains("<em>teapot</em>"), "{}", hit.highlight.description);
    assert_eq!(hit.category, "Kitchen/Tableware");
}

#[tokio::test]
async fn suggestions_complete_the_last_word() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    let names: Vec<String> = f.index.suggest("ket", 5).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(sorted(names), ["Electric Kettle", "Stovetop Kettle"]);
    assert_eq!(f.index.suggest("wireless h", 5).unwrap()[0].name, "Wireless Headphones");
    assert!(f.index.suggest("", 5).unwrap().is_empty());
    assert!(f.index.suggest("x", 0).is_err());
}

#[tokio::test]
async fn hostile_text_is_searched_or_refused_never_a_panic() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    let syntax: String = "+-&|!(){}[]^\"~*?:\\/<>'`=,.;%$#@".into();
    let long_word = "k".repeat(900);
    for text in ["", " ", syntax.as_str(), "🫖 kettle", "كتاب", "\u{202e}kettle", "\0", long_word.as_str(), "a an the", "ȷ́́́́"] {
        let result = f.index.search(&SearchRequest { text: text.into(), limit: 10, ..Default::default() });
        assert!(result.is_ok(), "{text:?}: {result:?}");
        assert!(f.index.suggest(text, 5).is_ok());
    }
    let huge = "kettle ".repeat(2_000);
    assert!(matches!(
        f.index.search(&SearchRequest { text: huge, limit: 10, ..Default::default() }),
        Err(SearchError::BadRequest { field: "q", .. })
    ));
    assert_eq!(f.ids("🫖 kettle "), f.ids("kettle "), "a word with nothing to index is ignored");
}

#[tokio::test]
async fn a_reopened_index_keeps_its_documents_and_another_version_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = SearchConfig { dir: Some(dir.path().to_owned()), ..Default::default() };
    let views = Arc::new(Views::new());
    views.apply(catalog().into_iter().map(|r| ViewUpdate::Product { key: r.product_id.clone(), row: Some(r) }));
    {
        let index = SearchIndex::open(config.clone(), views.clone()).unwrap();
        index.sync();
        index.wait_synced().await;
        assert_eq!(index.num_docs(), 7);
    }
    // The views lost p7 while no index followed them.
    views.apply([ViewUpdate::Product { key: "p7".into(), row: None }]);
    {
        let index = SearchIndex::open(config.clone(), views.clone()).unwrap();
        assert_eq!(index.num_docs(), 7, "reopened as it was");
        index.sync();
        index.wait_synced().await;
        assert_eq!(index.num_docs(), 6, "the sync removed what the views no longer have");
    }
    std::fs::write(dir.path().join("VERSION"), "0\n").unwrap();
    let index = SearchIndex::open(config, views.clone()).unwrap();
    assert_eq!(index.num_docs(), 0, "another schema version starts empty");
    index.sync();
    index.wait_synced().await;
    assert_eq!(index.num_docs(), 6, "and is rebuilt from the views");
    assert_eq!(std::fs::read_to_string(dir.path().join("VERSION")).unwrap().trim(), SCHEMA_VERSION.to_string());
}

#[tokio::test]
async fn the_index_progress_follows_the_views_when_no_product_changed() {
    let f = Fixture::new();
    // A write on another topic that changes no product.
    let position = Position::new("interactions", 3, 10);
    f.views.progress.report(ProgressReport { worker: 0, peers: 1, frontier: 1, offsets: vec![position] });
    f.index.applied().wait_for(&[Position::new("interactions", 3, 9)], Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn synonyms_come_from_the_synonyms_view_with_its_progress() {
    let mut f = Fixture::new();
    f.load(catalog()).await;
    let set = |groups: Vec<Vec<String>>| ViewUpdate::Synonyms {
        key: "default".into(),
        row: Some(shopflow_views::SynonymsRow { set_id: "default".into(), groups }),
    };
    f.apply(vec![set(vec![vec!["couch".into(), "sofa".into()], vec!["pot".into(), "kettle".into()]])]).await;
    assert_eq!(f.ids("couch "), ["p5"], "searchable once the index applied the change");
    assert_eq!(sorted(f.ids("pot ")), ["p1", "p7"]);
    f.apply(vec![set(vec![])]).await;
    assert!(f.ids("couch ").is_empty(), "the new set replaces the old");
}
