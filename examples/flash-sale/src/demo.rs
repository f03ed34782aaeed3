//! `flash-sale demo`: start the service, create items, fire a bounded flash crowd, report.
