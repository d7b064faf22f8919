//! The browser test's geofence and export part (issue 20, items 3 and 4): a group made from a
//! comma list (and a bad one refused with the server's reason), a fence drawn on the map by
//! clicking its corners around client 1, the `enter` event of client 1 pushed into the event
//! list, the history panel's zip download, and deleting both. Screenshot: `fences.png`.

use fantoccini::Client;
use serde_json::json;

use super::{artifacts, click, type_into, wait_for};

pub(super) async fn check(c: &Client) {
    wait_for(
        c,
        "the fence panel",
        15,
        "return window.livecam.fences instanceof Map && !!document.getElementById('fence-draw')",
        |v| v == true,
    )
    .await;

    // A group from a comma list; a bad list is refused with the field named.
    type_into(c, "group-name", "patrol").await;
    type_into(c, "group-members", "1,x").await;
    click(c, "#group-create").await;
    wait_for(
        c,
        "the bad group refused",
        10,
        "return document.getElementById('group-error').textContent",
        |v| v.as_str().is_some_and(|s| s.contains("members[1]")),
    )
    .await;
    type_into(c, "group-members", "1,2").await;
    click(c, "#group-create").await;
    wait_for(
        c,
        "the group",
        10,
        "return [...window.livecam.groups.values()].map(g => [g.name, g.members])",
        |v| v == &json!([["patrol", [1, 2]]]),
    )
    .await;
    // The group's cameras in the live grid: client 1 is selected (it plays in the player), so
    // the grid holds client 2, playing.
    c.execute(
        "document.querySelector('#group-list .group-grid').click(); return null",
        vec![],
    )
    .await
    .unwrap();
    wait_for(
        c,
        "the group's grid playing",
        15,
        "return [...document.querySelectorAll('#grid-tiles figure')].map(f => [f.dataset.client, f.querySelector('img').dataset.frame !== ''])",
        |v| v == &json!([["2", true]]),
    )
    .await;
    c.execute(
        "document.getElementById('grid-close').click(); return null",
        vec![],
    )
    .await
    .unwrap();

    // Draw a fence around client 1, tied to the group: a click on the map per corner.
    let at = wait_for(
        c,
        "client 1's position",
        10,
        "const x = window.livecam.clients.get(1); return x && x.fix ? [x.fix.lat, x.fix.lon] : null",
        |v| !v.is_null(),
    )
    .await;
    let (lat, lon) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
    type_into(c, "fence-name", "around one").await;
    c.execute(
        "const s = document.getElementById('fence-group'); s.value = s.options[1].value; return null",
        vec![],
    )
    .await
    .unwrap();
    click(c, "#fence-draw").await;
    let d = 0.004;
    for (dlat, dlon) in [(-d, -d), (-d, d), (d, d), (d, -d)] {
        c.execute(
            "const m = window.livecam.map, box = document.getElementById('map');
             const p = m.latLngToContainerPoint([arguments[0], arguments[1]]);
             const r = box.getBoundingClientRect();
             box.dispatchEvent(new MouseEvent('click', {
               clientX: r.left + p.x, clientY: r.top + p.y, bubbles: true, cancelable: true }));
             return null",
            vec![json!(lat + dlat), json!(lon + dlon)],
        )
        .await
        .unwrap();
    }
    wait_for(
        c,
        "four corners",
        5,
        "return window.livecam.drawing ? window.livecam.drawing.points.length : -1",
        |v| v == 4,
    )
    .await;
    click(c, "#fence-finish").await;
    let fence = wait_for(
        c,
        "the fence stored and drawn",
        10,
        "const f = [...window.livecam.fences.values()]; return f.length === 1 && window.livecam.fenceLayers.size === 1 && !window.livecam.drawing ? f[0] : null",
        |v| !v.is_null(),
    )
    .await;
    assert_eq!(fence["name"], "around one");
    assert_eq!(fence["points"].as_array().map(Vec::len), Some(4));
    // The corners landed where they were clicked (to a pixel's worth of degrees).
    let p0 = &fence["points"][0];
    assert!(
        (p0[0].as_f64().unwrap() - (lat - d)).abs() < 1e-4,
        "{fence}"
    );
    assert!(
        (p0[1].as_f64().unwrap() - (lon - d)).abs() < 1e-4,
        "{fence}"
    );

    // Client 1 is inside: its next fix raises `enter`, pushed live into the list.
    let fid = fence["id"].clone();
    wait_for(
        c,
        "client 1's enter event",
        20,
        "return [...document.querySelectorAll('#fence-events li')].map(l => [l.dataset.kind, l.dataset.client, l.dataset.fence])",
        |v| {
            v.as_array().is_some_and(|a| {
                a.iter()
                    .any(|e| e == &json!(["enter", "1", fid.to_string()]))
            })
        },
    )
    .await;
    c.execute(
        "document.getElementById('fence-events').scrollIntoView(); return null",
        vec![],
    )
    .await
    .unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(artifacts().join("fences.png"), &png).unwrap();

    // The history panel's download: a zip of the selected client's span.
    let got = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const a = document.getElementById('history-download');
             const url = window.livecam.exportUrl();
             fetch(url).then(r => r.arrayBuffer().then(b => done(
               [!!a, url, r.status, r.headers.get('content-type'),
                Array.from(new Uint8Array(b).slice(0, 2)), b.byteLength])));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(got[0], true, "{got}");
    assert!(
        got[1]
            .as_str()
            .is_some_and(|u| u.starts_with("/api/clients/1/export.zip?from=")),
        "{got}"
    );
    assert_eq!(
        (got[2].clone(), got[3].clone()),
        (json!(200), json!("application/zip"))
    );
    assert_eq!(got[4], json!([0x50, 0x4b]), "a zip starts with PK");
    assert!(got[5].as_u64().unwrap() > 1000, "pictures in it: {got}");

    // Deleting: the group is kept while the fence uses it, then both go.
    click(c, "#group-list .group-delete").await;
    wait_for(
        c,
        "the group kept",
        10,
        "return document.getElementById('group-error').textContent",
        |v| v.as_str().is_some_and(|s| s.contains("used by geofences")),
    )
    .await;
    click(c, "#fence-list .fence-delete").await;
    wait_for(
        c,
        "the fence gone",
        10,
        "return [window.livecam.fences.size, window.livecam.fenceLayers.size]",
        |v| v == &json!([0, 0]),
    )
    .await;
    click(c, "#group-list .group-delete").await;
    wait_for(
        c,
        "the group gone",
        10,
        "return window.livecam.groups.size",
        |v| v == 0,
    )
    .await;
}
