use super::*;

fn product() -> types::ProductCreated {
    types::ProductCreated {
        product_id: "p-1".into(),
        name: "Kettle".into(),
        description: String::new(),
        price: Money::new(2_999, "EUR"),
        sku: "KT-1".into(),
        category_id: "c-1".into(),
        brand_id: "b-1".into(),
        supplier_id: "s-1".into(),
    }
}

#[test]
fn envelope_round_trips_in_the_documented_wire_shape() {
    let envelope = Envelope::new(Event::ProductCreated(product()));
    let json: serde_json::Value = serde_json::from_slice(&envelope.to_json()).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["type"], "product.created");
    assert_eq!(json["data"]["price"]["amount_minor"], 2_999);
    assert_eq!(Envelope::decode(&envelope.to_json()).unwrap(), envelope);
}

#[test]
fn every_type_name_is_listed_once() {
    let mut names = TYPE_NAMES.to_vec();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), TYPE_NAMES.len());
    assert_eq!(Event::ProductCreated(product()).type_name(), "product.created");
}

#[test]
fn decode_rejects_garbage_unknown_types_and_unknown_fields() {
    assert!(matches!(Envelope::decode(b"{not json"), Err(DecodeError::Malformed(_))));
    let unknown = br#"{"v":1,"id":"0190f0a0-0000-7000-8000-000000000000","ts":1,"type":"product.exploded","data":{}}"#;
    assert!(matches!(Envelope::decode(unknown), Err(DecodeError::Malformed(_))));
    let extra = br#"{"v":1,"id":"0190f0a0-0000-7000-8000-000000000000","ts":1,"type":"product.deleted","data":{"product_id":"p","x":1}}"#;
    assert!(matches!(Envelope::decode(extra), Err(DecodeError::Malformed(_))));
    let v2 = br#"{"v":2,"id":"0190f0a0-0000-7000-8000-000000000000","ts":1,"type":"product.deleted","data":{"product_id":"p"}}"#;
    assert_eq!(Envelope::decode(v2), Err(DecodeError::UnsupportedVersion(2)));
}

#[test]
fn validation_names_the_field_and_rule() {
    let mut bad = product();
    bad.price = Money::new(-1, "EUR");
    let err = Event::ProductCreated(bad).validate().unwrap_err();
    assert_eq!(err.field, "price");

    let mut bad = product();
    bad.product_id = Id::from("has space");
    assert_eq!(Event::ProductCreated(bad).validate().unwrap_err().field, "product_id");

    let zero = types::StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity: 0 };
    assert_eq!(Event::StockReceived(zero).validate().unwrap_err().field, "quantity");

    let lowercase_currency = types::ProductUpdated {
        product_id: "p".into(),
        price: Some(Money::new(1, "eur")),
        ..Default::default()
    };
    assert!(Event::ProductUpdated(lowercase_currency).validate().is_err());
}

#[test]
fn card_numbers_are_refused_where_tokens_belong() {
    let method = types::PaymentMethodTokenized {
        user_id: "u".into(),
        token: "4242 4242 4242 4242".into(),
        last4: "4242".into(),
        card_brand: "visa".into(),
        exp_month: 12,
        exp_year: 2030,
    };
    assert_eq!(Event::PaymentMethodTokenized(method).validate().unwrap_err().field, "token");
}

#[test]
fn topics_and_keys_follow_the_design() {
    let e = Event::ProductCreated(product());
    assert_eq!((e.topic(), e.key().as_str()), (Topic::Catalog, "p-1"));
    let s = Event::StockReceived(types::StockReceived { product_id: "p-9".into(), warehouse_id: "w".into(), quantity: 1 });
    assert_eq!((s.topic(), s.key().as_str()), (Topic::Inventory, "p-9"));
    // The saga: a payment outcome goes to the order's partition (its user's), a hold request
    // to the product's, a charge request to the payment worker's queue (by order).
    let c = Event::ChargeFailed(types::ChargeFailed { order_id: "o-1".into(), user_id: "u-1".into(), reason: "declined".into(), retryable: false });
    assert_eq!((c.topic(), c.key().as_str()), (Topic::Orders, "u-1"));
    let h = Event::HoldRequested(types::HoldRequested { order_id: "o-1".into(), user_id: "u-1".into(), product_id: "p-2".into(), quantity: 1 });
    assert_eq!((h.topic(), h.key().as_str()), (Topic::Inventory, "p-2"));
    let r = Event::ChargeRequested(types::ChargeRequested { order_id: "o-1".into(), user_id: "u-1".into(), amount: Money::new(1, "EUR"), token: "tok_visa".into() });
    assert_eq!((r.topic(), r.key().as_str()), (Topic::Payments, "o-1"));
}

#[test]
fn schema_lists_every_event_type() {
    let schema = serde_json::to_string(&json_schema()).unwrap();
    for name in TYPE_NAMES {
        assert!(schema.contains(&format!("\"{name}\"")), "schema misses {name}");
    }
}

#[test]
fn synonym_sets_are_keyed_by_set_and_bounded() {
    let set = |groups: Vec<Vec<&str>>| {
        Event::SynonymsSet(types::SynonymsSet {
            set_id: "default".into(),
            groups: groups.into_iter().map(|g| g.into_iter().map(String::from).collect()).collect(),
        })
    };
    let ok = set(vec![vec!["sofa", "couch"]]);
    assert_eq!((ok.topic(), ok.key().as_str(), ok.type_name()), (Topic::Catalog, "default", "search.synonyms_set"));
    assert!(ok.validate().is_ok());
    assert!(set(vec![]).validate().is_ok(), "an empty set clears the synonyms");
    assert_eq!(set(vec![vec!["alone"]]).validate().unwrap_err().field, "groups");
    assert_eq!(set(vec![vec!["sofa", " "]]).validate().unwrap_err().field, "groups");
    let long = "x".repeat(101);
    assert_eq!(set(vec![vec!["sofa", long.as_str()]]).validate().unwrap_err().field, "groups");
}

#[test]
fn an_order_is_checked_on_its_units_per_product_and_its_one_currency() {
    let line = |product: &str, quantity: u32, currency: &str| types::OrderLine {
        product_id: product.into(),
        quantity,
        unit_price: Money::new(100, currency),
    };
    let order = |lines| {
        Event::OrderPlaced(types::OrderPlaced {
            order_id: "o".into(),
            user_id: "u".into(),
            lines,
            address_id: "a".into(),
            idempotency_key: "k".into(),
            payment_token: "tok_visa".into(),
            from_cart: false,
        })
    };
    assert!(order(vec![line("p", 6_000, "EUR"), line("q", 6_000, "EUR")]).validate().is_ok());
    let twice = order(vec![line("p", 6_000, "EUR"), line("p", 6_000, "EUR")]).validate().unwrap_err();
    assert_eq!(twice.field, "lines.quantity", "one product named twice is checked on the sum");
    assert_eq!(order(vec![line("p", 1, "EUR"), line("q", 1, "USD")]).validate().unwrap_err().field, "lines.unit_price");
    let status = Event::OrderStatusChanged(types::OrderStatusChanged {
        order_id: "o".into(),
        user_id: "u".into(),
        status: types::OrderStatus::Paid,
    });
    assert_eq!(status.validate().unwrap_err().field, "status", "paid is the saga's to decide");
}

/// Consumers read the bytes, so the shortcut writes exactly what the derive writes: with and
/// without a request fingerprint, escapes, non-ASCII and a negative time.
#[test]
fn json_from_a_serialised_event_has_the_derives_bytes() {
    let mut event = product();
    event.description = "a \"quoted\" line\nbreak \\ \u{1F600} \u{7}".into();
    let plain = Envelope { ts: -1, ..Envelope::new(Event::ProductCreated(event)) };
    let keyed = Envelope::idempotent(plain.event.clone(), plain.id, "fp \"1\"\n".into());
    for envelope in [plain, keyed] {
        let event_json = serde_json::to_vec(&envelope.event).unwrap();
        assert_eq!(String::from_utf8(envelope.to_json_with(&event_json)).unwrap(), String::from_utf8(envelope.to_json()).unwrap());
    }
}
