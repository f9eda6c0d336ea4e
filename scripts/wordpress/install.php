<?php
// Install a WordPress site from the command line, as wp-admin/install.php does, and give it
// five posts of block markup: the site bench/run.sh measures and the PGO training
// (scripts/pgo/train.sh) runs.
//
//   php scripts/wordpress/install.php WORDPRESS_DIR HOST
//
// WORDPRESS_DIR/wp-load.php must find its configuration for HOST (Debian's wp-config.php
// reads /etc/wordpress/config-HOST.php) and the database it names
// (scripts/wordpress/mariadbd.sh). Prints the theme and the number of posts.

if ($argc !== 3 || !is_file("$argv[1]/wp-load.php")) {
    fwrite(STDERR, "usage: php install.php WORDPRESS_DIR HOST (WORDPRESS_DIR/wp-load.php must exist)\n");
    exit(2);
}
$_SERVER['HTTP_HOST'] = $argv[2];
$_SERVER['REQUEST_URI'] = '/';
define('WP_INSTALLING', true);
require "$argv[1]/wp-load.php";
function wp_new_blog_notification() {} // no mail
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
wp_install('tokio_php bench', 'admin', 'admin@example.invalid', true, '', wp_generate_password(24));
for ($i = 1; $i <= 5; $i++) {
    $body = str_repeat("<!-- wp:paragraph --><p>Post $i: a paragraph with <em>markup</em> &amp; entities.</p><!-- /wp:paragraph -->\n", 8);
    wp_insert_post(['post_title' => "Post $i", 'post_content' => $body, 'post_status' => 'publish']);
}
$theme = wp_get_theme();
if (!$theme->exists()) {
    // WordPress then answers every page with 200 and an empty body.
    fwrite(STDERR, "install.php: the site's theme '{$theme->get_stylesheet()}' is not in " . get_theme_root()
        . "; install it (Debian: apt-get install wordpress-theme-{$theme->get_stylesheet()})\n");
    exit(1);
}
echo $theme->get_stylesheet(), ', ', wp_count_posts()->publish, " posts\n";
