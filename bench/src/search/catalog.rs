//! A generated catalog with shop-like text, for the search benchmark: brand, adjective,
//! material, product noun and a model code in the name; descriptions from feature phrases;
//! three-level category paths. Not real listings (no product data set of that size is
//! reachable from the registries here); seeded, so every run and both engines see the same.
//!
//! Two shapes of names ([`Shape`]):
//! - `uniform` (the 2026-11-30 report's): 48 brands, an adjective, maybe a material, a noun.
//!   2–3 words of such a name are shared by dozens of products ("insulated kettle"), so no
//!   engine can rank the one meant into the top 10 more than about half the time.
//! - `varied` (default since 2026-12-06): closer to real listings, which carry more that tells
//!   products apart: ~1,600 brands, a product line, maybe a colour and a size, as in "Veltora
//!   Aria Insulated Stainless Steel Electric Kettle Sage Green 1.7L QX-417".

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shopflow_events::{Id, Money};
use shopflow_views::ProductRow;

const BRANDS: [&str; 48] = [
    "Acme", "Northwind", "Globex", "Initech", "Umbrella", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Litware", "Proseware",
    "Adatum", "Lumo", "Brightline", "Cascadia", "Driftwood", "Everpeak", "Fjordic", "Granite", "Harbor", "Ironleaf", "Juniper",
    "Kestrel", "Larkspur", "Meridian", "Nimbus", "Oakridge", "Pinecrest", "Quartz", "Redwood", "Sable", "Tundra", "Upland",
    "Vireo", "Willow", "Yarrow", "Zephyr", "Aurora", "Boreal", "Cobalt", "Delta", "Ember", "Falcon", "Glacier", "Helix",
    "Indigo", "Jasper", "Kodiak",
];
const ADJECTIVES: [&str; 36] = [
    "Compact", "Deluxe", "Classic", "Portable", "Wireless", "Smart", "Vintage", "Ergonomic", "Foldable", "Lightweight",
    "Heavy-Duty", "Waterproof", "Insulated", "Adjustable", "Premium", "Professional", "Rechargeable", "Cordless", "Modern",
    "Rustic", "Minimalist", "Stackable", "Non-Stick", "Quiet", "Digital", "Magnetic", "Ultralight", "Reusable", "Handmade",
    "Organic", "Breathable", "Padded", "Extendable", "Dimmable", "Programmable", "Travel",
];
const MATERIALS: [&str; 18] = [
    "Stainless Steel", "Bamboo", "Ceramic", "Cast Iron", "Glass", "Oak", "Walnut", "Aluminium", "Leather", "Cotton", "Linen",
    "Wool", "Silicone", "Copper", "Carbon Fiber", "Marble", "Porcelain", "Recycled Plastic",
];
/// (category path, product nouns).
const CATEGORIES: [(&str, &[&str]); 16] = [
    ("Kitchen > Small Appliances > Kettles", &["Kettle", "Electric Kettle", "Tea Kettle", "Gooseneck Kettle"]),
    ("Kitchen > Small Appliances > Coffee", &["Coffee Maker", "Espresso Machine", "Coffee Grinder", "French Press", "Milk Frother"]),
    ("Kitchen > Cookware > Pans", &["Frying Pan", "Skillet", "Saucepan", "Wok", "Griddle"]),
    ("Kitchen > Tableware > Drinkware", &["Mug", "Tumbler", "Water Bottle", "Wine Glass", "Teapot"]),
    ("Home > Lighting > Lamps", &["Desk Lamp", "Floor Lamp", "Table Lamp", "Pendant Light", "Night Light"]),
    ("Home > Furniture > Seating", &["Office Chair", "Armchair", "Sofa", "Bar Stool", "Bench"]),
    ("Home > Furniture > Tables", &["Desk", "Coffee Table", "Side Table", "Dining Table", "Standing Desk"]),
    ("Home > Bedding > Pillows", &["Pillow", "Duvet", "Blanket", "Mattress Topper", "Throw"]),
    ("Electronics > Audio > Headphones", &["Headphones", "Earbuds", "Headset", "Earphones"]),
    ("Electronics > Audio > Speakers", &["Speaker", "Soundbar", "Bluetooth Speaker", "Subwoofer"]),
    ("Electronics > Computers > Accessories", &["Keyboard", "Mouse", "Monitor Stand", "USB Hub", "Laptop Sleeve", "Webcam"]),
    ("Outdoor > Camping > Tents", &["Tent", "Sleeping Bag", "Camping Stove", "Lantern", "Hammock"]),
    ("Outdoor > Hiking > Bags", &["Backpack", "Daypack", "Hydration Pack", "Duffel Bag"]),
    ("Garden > Planters > Pots", &["Planter", "Flower Pot", "Window Box", "Hanging Basket"]),
    ("Office > Stationery > Paper", &["Notebook", "Journal", "Planner", "Sketchbook", "Notepad"]),
    ("Books > Fiction > Novels", &["Novel", "Paperback", "Hardcover Edition", "Short Stories"]),
];
const FEATURES: [&str; 24] = [
    "keeps drinks hot for hours", "folds flat for storage", "comes with a two year warranty", "is dishwasher safe",
    "has an automatic shut-off", "charges over USB-C", "fits in a carry-on", "resists scratches and stains",
    "is easy to clean", "works with every stovetop including induction", "has a soft-touch grip", "ships fully assembled",
    "uses energy saving LEDs", "has noise cancelling", "offers up to 30 hours of battery life", "is made from sustainable sources",
    "has a non-slip base", "includes a travel pouch", "is backed by a lifetime guarantee", "pairs in seconds over Bluetooth",
    "has adjustable height", "is suitable for beginners and pros", "holds up in wind and rain", "is gentle on sensitive skin",
];
const USES: [&str; 12] = [
    "everyday use", "small apartments", "busy mornings", "the office", "weekend trips", "long hikes", "gifts", "students",
    "families", "outdoor adventures", "home workouts", "reading in bed",
];

const SYLLABLES: [&str; 40] = [
    "vel", "tor", "ka", "mi", "ran", "zo", "lu", "bex", "sor", "dal", "ne", "vin", "qua", "ri", "tes", "mo", "fen", "ar", "lo",
    "pra", "su", "kel", "do", "ven", "ia", "cor", "mar", "ti", "no", "gal", "hu", "ber", "sen", "ox", "ly", "pen", "ra", "vo",
    "del", "an",
];
const LINES: [&str; 60] = [
    "Aria", "Summit", "Nova", "Vista", "Pro", "Max", "Mini", "Plus", "Elite", "Origin", "Pulse", "Echo", "Atlas", "Vertex",
    "Halo", "Orbit", "Prism", "Terra", "Luna", "Sol", "Zen", "Flux", "Core", "Edge", "Arc", "Nest", "Bloom", "Drift", "Peak",
    "Ridge", "Crest", "Shore", "Grove", "Haven", "Spark", "Glow", "Breeze", "Frost", "Blaze", "Storm", "Wave", "Stone",
    "Forge", "Craft", "Studio", "Loft", "Metro", "Urban", "Nomad", "Scout", "Ranger", "Voyager", "Pioneer", "Classic",
    "Heritage", "Signature", "Essential", "Select", "Reserve", "Infinity",
];
const COLOURS: [&str; 24] = [
    "Matte Black", "White", "Sage Green", "Navy", "Charcoal", "Cream", "Red", "Sky Blue", "Graphite", "Sand", "Olive",
    "Burgundy", "Teal", "Mustard", "Blush Pink", "Slate Grey", "Ivory", "Forest Green", "Copper Brown", "Silver", "Gold",
    "Lavender", "Coral", "Midnight Blue",
];
const SIZES: [&str; 16] =
    ["1.7L", "1L", "500ml", "12oz", "20oz", "2-Pack", "4-Pack", "10in", "12in", "28cm", "XL", "40L", "2-Person", "A5", "60W", "3-Speed"];

/// The generated products, their category paths and the words used in names.
pub struct Catalog {
    pub rows: Vec<ProductRow>,
}

/// How names are made (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Uniform,
    Varied,
}

pub fn generate(products: usize, seed: u64, shape: Shape) -> Catalog {
    match shape {
        Shape::Uniform => uniform(products, seed),
        Shape::Varied => varied(products, seed),
    }
}

/// About 1,600 made-up brand names from two syllables ("Veltora" is three: some take a third).
fn brand_names(rng: &mut StdRng) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for a in SYLLABLES {
        for b in SYLLABLES {
            if a == b {
                continue;
            }
            let mut name = format!("{a}{b}");
            if rng.gen_bool(0.3) {
                name.push_str(SYLLABLES[rng.gen_range(0..SYLLABLES.len())]);
            }
            let mut chars = name.chars();
            let capitalised: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect();
            names.push(capitalised);
        }
    }
    names.sort();
    names.dedup();
    names
}

fn varied(products: usize, seed: u64) -> Catalog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut extra = StdRng::seed_from_u64(seed ^ 0x5eed);
    let brands = brand_names(&mut rng);
    let mut rows = Vec::with_capacity(products);
    for i in 0..products {
        let (category, nouns) = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
        let brand = brands[rng.gen_range(0..brands.len())].as_str();
        let noun = nouns[rng.gen_range(0..nouns.len())];
        let adjective = ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())];
        let material = MATERIALS[rng.gen_range(0..MATERIALS.len())];
        let model = format!("{}{}-{}", (b'A' + rng.gen_range(0..26)) as char, (b'A' + rng.gen_range(0..26)) as char, rng.gen_range(100..1000));
        let mut name = vec![brand, LINES[rng.gen_range(0..LINES.len())]];
        if rng.gen_bool(0.8) {
            name.push(adjective);
        }
        if rng.gen_bool(0.5) {
            name.push(material);
        }
        name.push(noun);
        if rng.gen_bool(0.5) {
            name.push(COLOURS[rng.gen_range(0..COLOURS.len())]);
        }
        if rng.gen_bool(0.4) {
            name.push(SIZES[rng.gen_range(0..SIZES.len())]);
        }
        name.push(&model);
        let description = description(&mut rng, brand, adjective, material, noun);
        rows.push(row(i, name.join(" "), description, category, brand, &model, &mut rng, &mut extra));
    }
    Catalog { rows }
}

fn description(rng: &mut StdRng, brand: &str, adjective: &str, material: &str, noun: &str) -> String {
    let mut features: Vec<&str> = FEATURES.choose_multiple(rng, 3).copied().collect();
    features.shuffle(rng);
    format!(
        "The {} {} from {brand} is made of {} and {}. It {} and {}. Ideal for {}.",
        adjective.to_lowercase(),
        noun.to_lowercase(),
        material.to_lowercase(),
        features[0],
        features[1],
        features[2],
        USES[rng.gen_range(0..USES.len())],
    )
}

/// `rng` draws price and stock (in the 2026-11-30 order, so the uniform catalog is the same
/// as then); `extra` the columns added later (ratings).
fn row(i: usize, name: String, description: String, category: &str, brand: &str, model: &str, rng: &mut StdRng, extra: &mut StdRng) -> ProductRow {
    let count = if extra.gen_bool(0.7) { extra.gen_range(1..200) } else { 0 };
    let stars = extra.gen_range(10..=50);
    ProductRow {
        product_id: Id::from(format!("p{i:07}").as_str()),
        name,
        description,
        price: Money::new(rng.gen_range(299..150_000), "EUR"),
        sku: model.to_owned(),
        category_id: Id::from(format!("c{}", category.len() % 97).as_str()),
        category_name: Some(category.to_owned()),
        brand_id: Id::from(brand.to_lowercase().as_str()),
        brand_name: Some(brand.to_owned()),
        supplier_id: "sup".into(),
        supplier_name: None,
        stock: rng.gen_range(0..50),
        created_at: 1_700_000_000_000 + i as i64 * 60_000,
        rating_avg: shopflow_views::Stars::mean(u64::from(count) * stars / 10, count),
        rating_count: count,
    }
}

fn uniform(products: usize, seed: u64) -> Catalog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut extra = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut rows = Vec::with_capacity(products);
    for i in 0..products {
        let (category, nouns) = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
        let brand = BRANDS[rng.gen_range(0..BRANDS.len())];
        let adjective = ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())];
        let material = MATERIALS[rng.gen_range(0..MATERIALS.len())];
        let noun = nouns[rng.gen_range(0..nouns.len())];
        let model = format!("{}{}-{}", (b'A' + rng.gen_range(0..26)) as char, (b'A' + rng.gen_range(0..26)) as char, rng.gen_range(100..1000));
        let name = if rng.gen_bool(0.6) {
            format!("{brand} {adjective} {material} {noun} {model}")
        } else {
            format!("{brand} {adjective} {noun} {model}")
        };
        let description = description(&mut rng, brand, adjective, material, noun);
        rows.push(row(i, name, description, category, brand, &model, &mut rng, &mut extra));
    }
    Catalog { rows }
}

/// The query classes of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryClass {
    /// One common word ("kettle").
    Broad,
    /// Two or three words of a product's name.
    Words,
    /// The same with one typo in one word of five letters or more.
    WordsTypo,
}

pub const CLASSES: [QueryClass; 3] = [QueryClass::Broad, QueryClass::Words, QueryClass::WordsTypo];

/// Words of a name a shopper would type: not the model code.
fn name_words(name: &str) -> Vec<&str> {
    name.split_whitespace().filter(|w| !w.chars().any(|c| c.is_ascii_digit())).collect()
}

/// One typo: a letter in the middle of the longest word (five letters or more) replaced.
pub fn with_typo(query: &str, rng: &mut StdRng) -> String {
    let mut words: Vec<String> = query.split_whitespace().map(str::to_owned).collect();
    let Some((index, _)) = words.iter().enumerate().filter(|(_, w)| w.chars().count() >= 5).max_by_key(|(_, w)| w.len()) else {
        return query.to_owned();
    };
    let mut chars: Vec<char> = words[index].chars().collect();
    let at = rng.gen_range(1..chars.len() - 1);
    let original = chars[at].to_ascii_lowercase();
    let mut replacement = original;
    while replacement == original {
        replacement = (b'a' + rng.gen_range(0..26)) as char;
    }
    chars[at] = replacement;
    words[index] = chars.into_iter().collect();
    words.join(" ")
}

/// A known item: 2–3 words of the product's name, in order, lower-cased.
pub fn known_item_query(row: &ProductRow, rng: &mut StdRng) -> String {
    let words = name_words(&row.name);
    let take = if words.len() >= 3 && rng.gen_bool(0.5) { 3 } else { 2.min(words.len()) };
    let mut picked: Vec<usize> = (0..words.len()).collect();
    picked.shuffle(rng);
    let mut picked: Vec<usize> = picked.into_iter().take(take).collect();
    picked.sort();
    picked.iter().map(|i| words[*i].to_lowercase()).collect::<Vec<_>>().join(" ")
}

/// How many products' names contain every word of `query` (as whole words, ignoring case):
/// more than 10, and ranking can only guess which of them was meant.
pub struct NameIndex(std::collections::HashMap<String, Vec<u32>>);

impl NameIndex {
    pub fn new(catalog: &Catalog) -> Self {
        let mut words: std::collections::HashMap<String, Vec<u32>> = std::collections::HashMap::new();
        for (i, row) in catalog.rows.iter().enumerate() {
            for word in row.name.split_whitespace() {
                let list = words.entry(word.to_lowercase()).or_default();
                if list.last() != Some(&(i as u32)) {
                    list.push(i as u32);
                }
            }
        }
        Self(words)
    }

    pub fn sharing(&self, query: &str) -> usize {
        let mut lists: Vec<&Vec<u32>> = Vec::new();
        for word in query.split_whitespace() {
            match self.0.get(word) {
                Some(list) => lists.push(list),
                None => return 0,
            }
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else { return 0 };
        first.iter().filter(|i| rest.iter().all(|l| l.binary_search(i).is_ok())).count()
    }
}

/// `count` queries of a class, drawn from the catalog.
pub fn queries(catalog: &Catalog, class: QueryClass, count: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let broad: Vec<&str> = CATEGORIES.iter().flat_map(|(_, nouns)| nouns.iter()).filter(|n| !n.contains(' ')).copied().collect();
    (0..count)
        .map(|_| match class {
            QueryClass::Broad => broad[rng.gen_range(0..broad.len())].to_lowercase(),
            QueryClass::Words | QueryClass::WordsTypo => {
                let row = &catalog.rows[rng.gen_range(0..catalog.rows.len())];
                let query = known_item_query(row, &mut rng);
                if class == QueryClass::WordsTypo {
                    with_typo(&query, &mut rng)
                } else {
                    query
                }
            }
        })
        .collect()
}
