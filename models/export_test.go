package models

import "gorm.io/gorm"

// MigrateTo applies the first version migrations to a fresh database, as an
// older keysmith would have left it, so a test can watch the later ones run.
func MigrateTo(db *gorm.DB, version int) error {
	replacer := dialects[db.Dialector.Name()]
	return db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("CREATE TABLE schema_version (version INTEGER NOT NULL)").Error; err != nil {
			return err
		}
		for _, m := range migrations[:version] {
			for _, stmt := range splitStatements(replacer.Replace(m)) {
				if err := tx.Exec(stmt).Error; err != nil {
					return err
				}
			}
		}
		return tx.Exec("INSERT INTO schema_version (version) VALUES (?)", version).Error
	})
}
